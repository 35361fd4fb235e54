"""Verified TLS to our own Postgres and Redis: which DSNs are safe, and how clients connect.

PHI, authorization codes and PKCE verifiers cross both links. asyncpg's default ``sslmode`` is
``prefer`` (no certificate check, and a silent fall-back to plaintext; asyncpg
connect_utils), and its ``verify-*`` modes trust only ``sslrootcert`` (else
``PGSSLROOTCERT`` or ``~/.postgresql/root.crt``), never the system CA store, and redis-py and arq
check no hostname on ``rediss://`` unless told to. So a non-loopback server must be reached
with ``sslmode=verify-full`` (or ``verify-ca``) and over ``rediss://`` with hostname checking;
the only way around it is ``ALLOW_INSECURE_TRANSPORT``, which the commands log at warning on
every start. Everything here is pure: it reads DSNs, it never connects.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

# asyncpg's SSLMode values that check the server's certificate (connect_utils.SSLMode).
VERIFYING_SSLMODES: Final = frozenset({"verify-ca", "verify-full"})
# redis-py's URL values that turn a check off (redis.asyncio.connection.FALSE_STRINGS, and the
# ssl_cert_reqs values below "required").
_FALSE: Final = frozenset({"0", "f", "false", "n", "no", "off"})
_WEAK_CERT_REQS: Final = frozenset({"none", "optional"})


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses, where plain transport cannot be sniffed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_local_postgres_host(host: str) -> bool:
    # No host means a Unix socket (or localhost); a path is a Unix socket directory.
    return not host or host.startswith("/") or is_loopback_host(host)


def _strip_port(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return hostport.rpartition(":")[0] if hostport.count(":") == 1 else hostport


def _postgres_hosts(dsn: str, pghost: str = "") -> list[str]:
    """The hosts a libpq-style DSN names, as asyncpg picks them: the ``host`` query
    parameters, else the netloc's (several, comma-separated), else ``PGHOST``; empty for the
    local socket. A ``service`` (pg_service.conf) hides its hosts: it counts as remote."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    if "service" in query:
        return ["<service>"]
    if query.get("host"):
        return [host for value in query["host"] for host in value.split(",")]
    hostlist = parts.netloc.rpartition("@")[2]
    if not hostlist and pghost:
        return pghost.split(",")
    return [_strip_port(item) for item in hostlist.split(",")]


def postgres_problem(dsn: str, pghost: str = "") -> str | None:
    """Why ``dsn`` (``DATABASE_URL``) would reach a remote Postgres unverified, or None."""
    if all(_is_local_postgres_host(host) for host in _postgres_hosts(dsn, pghost)):
        return None
    modes = parse_qs(urlsplit(dsn).query).get("sslmode", [""])
    # asyncpg takes the last value of a repeated parameter, and the DSN's over PGSSLMODE.
    if modes[-1] in VERIFYING_SSLMODES:
        return None
    return (
        "DATABASE_URL: a non-loopback Postgres needs sslmode=verify-full (or verify-ca) in the "
        "DSN, and sslrootcert=<CA file> (asyncpg does not read the system CA store)"
    )


def redis_problem(url: str) -> str | None:
    """Why ``url`` (``REDIS_URL``) would reach a remote Redis unverified, or None."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or is_loopback_host(parts.hostname or "localhost"):
        return None
    if parts.scheme != "rediss":
        return "REDIS_URL: a non-loopback Redis needs rediss:// (TLS with hostname checking)"
    query = {key: values[-1].lower() for key, values in parse_qs(parts.query).items()}
    if query.get("ssl_cert_reqs") in _WEAK_CERT_REQS or query.get("ssl_check_hostname") in _FALSE:
        return "REDIS_URL: ssl_cert_reqs and ssl_check_hostname must not turn verification off"
    return None


def transport_problems(database_url: str, redis_url: str, pghost: str = "") -> list[str]:
    """Every unverified link the two DSNs would open (empty when both are safe)."""
    found = (postgres_problem(database_url, pghost), redis_problem(redis_url))
    return [problem for problem in found if problem]


def redis_tls_options(url: str) -> dict[str, Any]:
    """redis-py options for ``url``: on ``rediss://``, a required certificate whose name must
    match the host (redis-py 5 and arq check no hostname by default), and the CA file the
    URL's ``ssl_ca_certs`` names (arq's ``RedisSettings.from_dsn`` drops the query)."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return {}
    query = parse_qs(parts.query)
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if "ssl_ca_certs" in query:
        options["ssl_ca_certs"] = query["ssl_ca_certs"][-1]
    return options
