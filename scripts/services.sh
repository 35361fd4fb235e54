#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1, starting them when they are installed
# but stopped, and installing them from Debian's packages when INSTALL=1 (CI) and absent.
# Creates the databases the demo and the tests use. Says exactly what is missing otherwise.
set -euo pipefail

PGHOST=127.0.0.1
PGPORT=5432
PGUSER=${PGUSER:-postgres}
INSTALL=${INSTALL:-0}

have() { command -v "$1" >/dev/null 2>&1; }
pg_up() { have pg_isready && pg_isready -q -h "$PGHOST" -p "$PGPORT"; }
redis_up() { have redis-cli && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

install_packages() {
  if [ "$INSTALL" != "1" ]; then
    echo "services: $* not installed; install with: apt-get install -y $*" >&2
    exit 1
  fi
  echo "services: installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  if ! have pg_ctlcluster; then install_packages postgresql; fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "services: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  # A fresh Debian cluster only trusts local sockets; the tests connect over TCP.
  local hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "bbingest-trust" "$hba"; then
    printf 'host all all 127.0.0.1/32 trust # bbingest-trust\nhost all all ::1/128 trust # bbingest-trust\n' \
      | cat - "$hba" > "$hba.new" && mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
}

start_redis() {
  if ! have redis-server; then install_packages redis-server; fi
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 50); do
    if $check; then return 0; fi
    sleep 0.2
  done
  echo "services: $what does not answer on 127.0.0.1" >&2
  exit 1
}

pg_up || start_postgres
wait_for PostgreSQL pg_up
redis_up || start_redis
wait_for Redis redis_up

for db in "$@"; do
  if ! psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -Atqc \
      "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qc "CREATE DATABASE \"$db\""
    echo "services: created database $db"
  fi
done
echo "services: PostgreSQL and Redis are up"
