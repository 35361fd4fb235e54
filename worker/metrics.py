"""Prometheus metrics of a worker replica. Labels never carry personal data: endpoints are
named by kind, never by URL (which holds a patient id), connections are never labels, and
apps are labelled by name (never by client id or secret)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

NAMESPACE: Final = "bbingest"

BB2_REQUESTS = Counter(
    "bb2_requests",
    "Requests sent to Blue Button 2.0, by app, endpoint kind and HTTP status (or 'error').",
    ["app", "endpoint", "status"],
    namespace=NAMESPACE,
)
BB2_RETRIES = Counter(
    "bb2_retries",
    "Requests repeated within a job, by app and reason (rate_limited, server_error, transport).",
    ["app", "reason"],
    namespace=NAMESPACE,
)
BUDGET_WAIT = Histogram(
    "budget_wait_seconds",
    "Time spent waiting for a slot of an app's shared request budget, by app and lane.",
    ["app", "lane"],
    namespace=NAMESPACE,
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BUDGET_RATE = Gauge(
    "budget_rate",
    "Requests per second an app's shared budget grants now: BB_RATE_LIMIT, or less after 429s "
    "(AIMD; as last seen by this replica).",
    ["app"],
    namespace=NAMESPACE,
)
JOBS = Counter(
    "jobs",
    "Jobs finished, by job and outcome (active, error, needs_reauth, revoked, retry, ...).",
    ["job", "outcome"],
    namespace=NAMESPACE,
)
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "Wall time of a job, by job.",
    ["job"],
    namespace=NAMESPACE,
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800),
)
RESOURCES = Counter(
    "resources",
    "Resources written or found unchanged, by resource type and result.",
    ["resource_type", "result"],
    namespace=NAMESPACE,
)
DECRYPT_KEY_MISSING = Counter(
    "decrypt_key_missing",
    "Stored values this replica could not decrypt for want of their key, by key id (alert: "
    "a replica lacks a key of TOKEN_ENCRYPTION_KEY / TOKEN_DECRYPT_ONLY_KEYS).",
    ["key_id"],
    namespace=NAMESPACE,
)
QUEUE_DEPTH = Gauge(
    "queue_depth", "Jobs waiting in each queue (lane).", ["queue"], namespace=NAMESPACE
)
CONNECTIONS = Gauge(
    "connections", "Connections by app and status.", ["app", "status"], namespace=NAMESPACE
)
APP_PAUSED = Gauge(
    "app_paused",
    "1 while CMS keeps the app inactive (its jobs wait), else 0.",
    ["app"],
    namespace=NAMESPACE,
)
CODE_AGE_AT_EXCHANGE = Histogram(
    "code_age_at_exchange_seconds",
    "Age of an authorization code (from its event's arrival) when BB2 answered its exchange.",
    ["app"],
    namespace=NAMESPACE,
    buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 40, 50, 55, 60, 90),
)
CODES_EXPIRED = Counter(
    "codes_expired",
    "Authorization codes that died waiting for their exchange (never sent), by app.",
    ["app"],
    namespace=NAMESPACE,
)
CODE_EXCHANGES = Counter(
    "code_exchanges",
    "Code exchanges ended, by app and outcome (exchanged, expired, refused, lost_in_flight,"
    " failed).",
    ["app", "outcome"],
    namespace=NAMESPACE,
)
EXCHANGE_BACKLOG = Gauge(
    "exchange_backlog",
    "Authorization codes waiting for their exchange, by app.",
    ["app"],
    namespace=NAMESPACE,
)
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries",
    "Webhook delivery attempts ended, by app and outcome (delivered, failed: tried again "
    "later, dead_lettered: given up after WEBHOOK_GIVE_UP_HOURS).",
    ["app", "outcome"],
    namespace=NAMESPACE,
)
WEBHOOK_BACKLOG = Gauge(
    "webhook_backlog",
    "Webhook deliveries not yet delivered nor dead-lettered, by app.",
    ["app"],
    namespace=NAMESPACE,
)
WEBHOOK_OLDEST_UNDELIVERED = Gauge(
    "webhook_oldest_undelivered_seconds",
    "How long the oldest undelivered webhook delivery has waited, by app (0: none waits).",
    ["app"],
    namespace=NAMESPACE,
)
