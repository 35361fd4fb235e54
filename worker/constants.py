"""Every Redis key, queue name and fixed default of the service, in one place."""

from __future__ import annotations

from typing import Final

REDIS_PREFIX: Final = "bbingest"

# Shared request budget (worker.bluebutton.budget); {client} is the BB2 client id.
BUDGET_TAT_KEY: Final = REDIS_PREFIX + ":budget:{client}:tat"
BUDGET_COOLDOWN_KEY: Final = REDIS_PREFIX + ":budget:{client}:cooldown"
# The adaptive rate after a 429: value = the rate the last decrease set, remaining life =
# the deficit still to recover (absent: the configured limit). Its name predates AIMD.
BUDGET_SERVER_LIMIT_KEY: Final = REDIS_PREFIX + ":budget:{client}:server-limit"
BUDGET_WAITING_KEY: Final = REDIS_PREFIX + ":budget:{client}:interactive-waiting"
# Code exchanges waiting for a slot: interactive and bulk requests yield to them.
BUDGET_URGENT_KEY: Final = REDIS_PREFIX + ":budget:{client}:urgent-waiting"
# The server counts a sliding one-second window; spacing grants over a slightly longer
# one (BB_RATE_MARGIN, default 2%) absorbs the jitter between a grant and its arrival.
BUDGET_WINDOW_SECONDS: Final = 1.0

# arq queues ("lanes"): connect and unlink, where a person waits and codes expire within
# minutes, never queue behind bulk resync work. The interactive lane is arq's default
# queue, so upstream services that enqueue with arq's defaults land there.
QUEUE_INTERACTIVE: Final = "arq:queue"
QUEUE_BULK: Final = REDIS_PREFIX + ":queue:bulk"
# The code exchange: a code lives 60 s at CMS (FACTS.md, Authorization), so exchanges have
# a queue, worker slots and budget priority of their own; the first sync follows as its own
# job in the interactive lane.
QUEUE_EXCHANGE: Final = REDIS_PREFIX + ":queue:exchange"
JOB_EXCHANGE: Final = "exchange"
JOB_FIRST_SYNC: Final = "first_sync"
# A dead replica holds an exchange for at most this long (other jobs: JOB_LEASE_SECONDS).
EXCHANGE_LEASE_SECONDS: Final = 5.0
# An exchange cannot outlive its code by much: a minute, plus BB2's answer time.
EXCHANGE_TIMEOUT_SECONDS: Final = 300
# An exchange job (code and verifier) leaves Redis this long after its code could be used.
EXCHANGE_PAYLOAD_GRACE_SECONDS: Final = 300
# Exchanges waiting, per app: a sorted set of job ids scored by their event's arrival.
EXCHANGE_BACKLOG_KEY: Final = REDIS_PREFIX + ":exchange:{app}:backlog"
# The intake admits a code only if it can be exchanged this long before it expires.
EXCHANGE_MARGIN_SECONDS: Final = 5.0
JOB_CONNECT: Final = "connect"
JOB_UNLINK: Final = "unlink"
JOB_RESYNC: Final = "resync"
JOB_TIMEOUT_SECONDS: Final = 1800
JOB_MAX_TRIES: Final = 8
# The result of a job holds its arguments (codes, verifiers): never keep it.
JOB_KEEP_RESULT_SECONDS: Final = 0

# Outages of our own Postgres or Redis: a job that meets one comes back after 2, 4, 8 ...
# up to 120 s; a Redis client repeats a command on a dropped connection this many times;
# a replica whose Redis is away polls it at most this far apart.
OUTAGE_RETRY_BASE_SECONDS: Final = 2.0
OUTAGE_RETRY_CAP_SECONDS: Final = 120.0
REDIS_CLIENT_RETRIES: Final = 3
REDIS_OUTAGE_POLL_SECONDS: Final = 2.0
# Tokens just received for a spent code are the only copy: their save waits this long for
# Postgres before the job gives up on them.
GRANT_SAVE_PATIENCE_SECONDS: Final = 60.0

# The lock that serialises the refreshes of one connection (worker.sync.refresh_lock): it
# lives this long unless its holder renews it (every third of it), and waiters poll it this
# often. Its fence counter outlives any holder by far, so fences only ever grow.
REFRESH_LOCK_KEY: Final = REDIS_PREFIX + ":refresh:{connection}:lock"
REFRESH_FENCE_KEY: Final = REDIS_PREFIX + ":refresh:{connection}:fence"
REFRESH_LOCK_SECONDS: Final = 10.0
REFRESH_LOCK_POLL_SECONDS: Final = 0.05
REFRESH_FENCE_TTL_SECONDS: Final = 86400.0

# Blue Button paging.
EOB_PAGE_SIZE: Final = 50
# Far more pages than any beneficiary's claims fill (250,000 EOBs): a server that keeps
# sending new next links past it is looping, however it spells them.
MAX_PAGES_PER_QUERY: Final = 5000
# No real page comes near this; a larger one is refused rather than loaded.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024

# Longest error text kept in connections.last_error and sync_runs.error.
MAX_ERROR_CHARS: Final = 500

# An app CMS made inactive: a flag per app in Redis (the time it was first seen, ISO),
# kept while its jobs keep meeting the refusal; each job of the app waits and comes back
# after APP_PAUSE_PROBE_SECONDS, and at most one of them asks BB2 per period (the probe).
APP_PAUSED_KEY: Final = REDIS_PREFIX + ":app_paused:{app}"
APP_PROBE_KEY: Final = REDIS_PREFIX + ":app_probe:{app}"
APP_PAUSE_PROBE_SECONDS: Final = 60
# A flag nobody renews (every job of the app gone) lapses after a day.
APP_PAUSED_TTL_SECONDS: Final = 86400
# Times /v2/o/revoke/ may answer 500 to a freshly refreshed access token (a live grant
# behind it: CMS failing for real) before an owed revocation settles for revoking its tokens.
MAX_GRANT_REFUSALS: Final = 3
