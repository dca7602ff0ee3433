"""Settings for the BNPL service: one module, driven by the environment.

With no environment at all it runs embedded: SQLite, Celery eager, local-memory cache,
DEBUG on. ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and Redis. With
``DEBUG=False`` it refuses to start without real secrets and turns on the production
switches (``manage.py check --deploy`` is clean).
"""

import logging.config
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from decouple import Csv, config
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = config("DEBUG", default=True, cast=bool)

# Local-development defaults: usable only with DEBUG on (checked below).
DEV_SECRET_KEY = "dev-insecure-secret-key-for-local-use-only-never-in-production-0123456789"  # noqa: S105 - refused when DEBUG=False  # nosec B105
DEV_FIELD_ENCRYPTION_KEY = "dev-insecure-field-encryption-key-for-local-use-only"

SECRET_KEY = config("SECRET_KEY", default=DEV_SECRET_KEY)
# Comma-separated; the first key encrypts, every key decrypts (so a key can be rotated).
FIELD_ENCRYPTION_KEY = config("FIELD_ENCRYPTION_KEY", default=DEV_FIELD_ENCRYPTION_KEY)

if not DEBUG:
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("DEBUG=False needs a real SECRET_KEY (50+ characters) in the environment.")
    if DEV_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEY.split(",") or len(FIELD_ENCRYPTION_KEY) < 32:
        raise ImproperlyConfigured("DEBUG=False needs a real FIELD_ENCRYPTION_KEY (32+ characters) in the environment.")

ALLOWED_HOSTS = config("ALLOWED_HOSTS", default="localhost,127.0.0.1,[::1],testserver" if DEBUG else "", cast=Csv())
CSRF_TRUSTED_ORIGINS = config("CSRF_TRUSTED_ORIGINS", default="", cast=Csv())
# A refused form (no CSRF token, or a stale one) gets a page of the site, under its CSP.
CSRF_FAILURE_VIEW = "ops.pages.common.csrf_failure"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    # Refresh tokens issued are recorded (OutstandingToken) and spent ones kept (BlacklistedToken).
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "core",
    "accounts",
    "events",
    "ledger",
    "bnpl",
    "payments",
    "refunds",
    "settlements",
    "ops",
]

MIDDLEWARE = [
    "ops.metrics.MetricsMiddleware",
    "core.middleware.RequestIdMiddleware",
    # The security headers sit above every middleware that answers by itself (problem details
    # for unrouted URLs, 413, static files), so that every answer carries them.
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    "core.middleware.ProblemDetailsMiddleware",
    # Before the size limit: a chunked body gets its Content-Length here, which the limit checks.
    "core.middleware.ChunkedBodyMiddleware",
    "core.middleware.BodySizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
DATABASE_URL = config("DATABASE_URL", default="")
# Behind PgBouncer in transaction mode a connection is not ours between transactions: no
# persistent connections and no server-side cursors. Otherwise a worker keeps its connection
# (opening one costs a backend start and a cold catalog cache), checked before each request.
DATABASE_TRANSACTION_POOLER = config("DATABASE_TRANSACTION_POOLER", default=False, cast=bool)
DATABASE_CONN_MAX_AGE = 0 if DATABASE_TRANSACTION_POOLER else config("DATABASE_CONN_MAX_AGE", default=600, cast=int)
# psycopg 3 sends the parameters apart from the statement (server-side binding), and the
# server prepares a statement a connection has run DATABASE_PREPARE_THRESHOLD times: its
# parse and plan are done once per connection instead of per run (a third of PostgreSQL's
# CPU per payment; docs/SCALING.md, "The stack's own levers"). A prepared statement lives in
# one server connection: behind a transaction pooler none is prepared (0).
DATABASE_SERVER_SIDE_BINDING = config("DATABASE_SERVER_SIDE_BINDING", default=True, cast=bool)
DATABASE_PREPARE_THRESHOLD = config(
    "DATABASE_PREPARE_THRESHOLD",
    default=0 if DATABASE_TRANSACTION_POOLER or not DATABASE_SERVER_SIDE_BINDING else 2,
    cast=int,
)
if DATABASE_PREPARE_THRESHOLD and (DATABASE_TRANSACTION_POOLER or not DATABASE_SERVER_SIDE_BINDING):
    raise ImproperlyConfigured(
        "DATABASE_PREPARE_THRESHOLD needs DATABASE_SERVER_SIDE_BINDING (statements bound by the client are "
        "never prepared), and no transaction pooler (a prepared statement lives in one server connection)."
    )


# Seconds to wait for a connection: a database that accepts and never answers (hung, or a
# network that drops packets) fails the request with a 503 instead of holding it forever.
DATABASE_CONNECT_TIMEOUT = config("DATABASE_CONNECT_TIMEOUT", default=5, cast=int)


def _database(url: str) -> dict:
    database = dj_database_url.parse(url, conn_max_age=DATABASE_CONN_MAX_AGE, conn_health_checks=True)
    database["DISABLE_SERVER_SIDE_CURSORS"] = DATABASE_TRANSACTION_POOLER
    if database["ENGINE"].endswith("postgresql"):
        options = database.setdefault("OPTIONS", {})
        options.setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
        if DATABASE_SERVER_SIDE_BINDING:
            options["server_side_binding"] = True
        if DATABASE_PREPARE_THRESHOLD:
            options["prepare_threshold"] = DATABASE_PREPARE_THRESHOLD
    return database


if DATABASE_URL:
    DATABASES = {"default": _database(DATABASE_URL)}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
# Services own their transactions (STYLE §8): no request holds a row lock while it waits.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A streaming replica of the primary for reads that may lag (analytics); see config/db_router.py.
DATABASE_REPLICA_URL = config("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = _database(DATABASE_REPLICA_URL)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["config.db_router.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker and results --------------------------------------------
REDIS_URL = config("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": config("CACHE_KEY_PREFIX", default="bnpl"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# A redis:// broker goes through config/broker.py's transport (kombu's, fixed so that a worker
# takes work again after Redis stalls or goes away), registered by config/celery.py.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
# Without a broker, tasks run in-process so `make run` needs nothing but Python.
CELERY_TASK_ALWAYS_EAGER = config("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL, cast=bool)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
# Nothing waits for a task's return value: the service publishes and forgets (the state is in
# the database). Storing results cost a Redis write per task, and publishing a task whose
# result is kept subscribes the publishing process to it, for every request that queues one.
CELERY_TASK_IGNORE_RESULT = True
# A pool process that dies mid-task (killed, out of memory) hands its task back to the
# queue instead of acknowledging it as failed: with acks_late, a task is lost only if it
# finished. Every task is idempotent, so running it again does its work once.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# socket_timeout: a broker that stops answering (hung, or gone without closing the
# connection) fails a publish in seconds instead of holding the request forever.
# visibility_timeout: a task taken by a worker that was lost (the whole node) goes back to
# the queue after this many seconds; longer than any task runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 3,
    "visibility_timeout": config("CELERY_BROKER_VISIBILITY_TIMEOUT", default=3600, cast=int),
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Workers log through settings.LOGGING too: JSON lines, PII masked.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth -------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation and time ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# "Today" for due dates and the overdue sweep is this zone's date (DESIGN §3).
BNPL_TIME_ZONE = config("BNPL_TIME_ZONE", default="Asia/Tashkent")

# --- Static files -----------------------------------------------------------------------
STATIC_URL = "static/"
# The project's own scripts and styles (the pages load no inline script: see the CSP).
STATICFILES_DIRS = [BASE_DIR / "static"]
# `collectstatic` output, served by WhiteNoise in production; unused while DEBUG is on.
STATIC_ROOT = config("STATIC_ROOT", default="" if DEBUG else str(BASE_DIR / "staticfiles")) or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# In development WhiteNoise serves straight from the apps (Swagger UI's assets come from
# drf-spectacular-sidecar, never a CDN); in production from `collectstatic`'s output.
WHITENOISE_USE_FINDERS = DEBUG

# --- Money and business rules -----------------------------------------------------------
# Consent (DESIGN §6): how long an offer awaits the customer, an authorization the capture.
BNPL_CHECKOUT_TTL_MINUTES = config("BNPL_CHECKOUT_TTL_MINUTES", default=1440, cast=int)
BNPL_AUTHORIZATION_DAYS = config("BNPL_AUTHORIZATION_DAYS", default=13, cast=int)
BNPL_PLAN_EXPIRY_MINUTES = config("BNPL_PLAN_EXPIRY_MINUTES", default=5, cast=int)
# Where customers reach this service (the checkout links sent to them).
BNPL_PUBLIC_URL = config("BNPL_PUBLIC_URL", default="http://localhost:8000")
BNPL_DEFAULT_CURRENCY = config("BNPL_DEFAULT_CURRENCY", default="USD")
BNPL_MAX_AMOUNT = config("BNPL_MAX_AMOUNT", default="100000.00", cast=Decimal)
BNPL_DEFAULT_CREDIT_LIMIT = config("BNPL_DEFAULT_CREDIT_LIMIT", default="2000.00", cast=Decimal)
BNPL_PAYMENT_GATEWAY = config("BNPL_PAYMENT_GATEWAY", default="payments.gateways.FakeGateway")
BNPL_IDEMPOTENCY_TTL_HOURS = config("BNPL_IDEMPOTENCY_TTL_HOURS", default=24, cast=int)
# A key still in flight after this many seconds was abandoned (its request died with its
# process or its database connection): a retry with the key takes it over and finishes the
# work. Longer than any request may run (gunicorn's timeout).
BNPL_IDEMPOTENCY_LEASE_SECONDS = config("BNPL_IDEMPOTENCY_LEASE_SECONDS", default=60, cast=int)
BNPL_CURRENCIES = config("BNPL_CURRENCIES", default="USD,EUR,UZS", cast=Csv())
# Installments become OVERDUE this many days after their due date has passed.
BNPL_GRACE_DAYS = config("BNPL_GRACE_DAYS", default=0, cast=int)
BNPL_OVERDUE_SWEEP_MINUTES = config("BNPL_OVERDUE_SWEEP_MINUTES", default=5, cast=int)
# The sweep's share of work per task: plans per chunk (workers sweep chunks side by side).
BNPL_SWEEP_CHUNK_PLANS = config("BNPL_SWEEP_CHUNK_PLANS", default=10_000, cast=int)
# A sweep resumes an open run (its chunks not done) younger than this; an older one is taken
# as stuck, left, and a new run started (every step is idempotent).
BNPL_SWEEP_STALE_MINUTES = config("BNPL_SWEEP_STALE_MINUTES", default=30, cast=int)
BNPL_DUE_SOON_DAYS = config("BNPL_DUE_SOON_DAYS", default=3, cast=int)
# Late fees (Afterpay's policy when on): a first fee when an installment turns overdue, a
# second one if it is still unpaid N days later; a plan's fees are capped at the lower of
# a share of its total and a fixed amount.
BNPL_LATE_FEES_ENABLED = config("BNPL_LATE_FEES_ENABLED", default=False, cast=bool)
BNPL_LATE_FEE_FIRST = config("BNPL_LATE_FEE_FIRST", default="10.00", cast=Decimal)
BNPL_LATE_FEE_SECOND = config("BNPL_LATE_FEE_SECOND", default="7.00", cast=Decimal)
BNPL_LATE_FEE_SECOND_AFTER_DAYS = config("BNPL_LATE_FEE_SECOND_AFTER_DAYS", default=7, cast=int)
BNPL_LATE_FEE_CAP_PERCENT = config("BNPL_LATE_FEE_CAP_PERCENT", default="25", cast=Decimal)
BNPL_LATE_FEE_CAP_AMOUNT = config("BNPL_LATE_FEE_CAP_AMOUNT", default="68.00", cast=Decimal)

# Autopay: customers with a card on file (and autopay on) are charged on the due date; a
# failed charge is tried again this many days after the due date.
BNPL_AUTOPAY_ENABLED = config("BNPL_AUTOPAY_ENABLED", default=True, cast=bool)
BNPL_AUTOPAY_RETRY_DAYS = [int(d) for d in config("BNPL_AUTOPAY_RETRY_DAYS", default="1,3", cast=Csv())]
# Customers per autopay task: one task charges a chunk of them, workers take chunks side by side.
BNPL_AUTOPAY_CHUNK_CUSTOMERS = config("BNPL_AUTOPAY_CHUNK_CUSTOMERS", default=200, cast=int)
# What a refund returns beyond the unpaid remainder goes back to the card, or to the
# customer's credit balance ("card" or "credit"; a refund request may choose).
BNPL_REFUND_PAYOUT_METHOD = config("BNPL_REFUND_PAYOUT_METHOD", default="card")
if BNPL_REFUND_PAYOUT_METHOD not in ("card", "credit"):
    raise ImproperlyConfigured('BNPL_REFUND_PAYOUT_METHOD must be "card" or "credit".')
# Merchant pricing (DESIGN §6): a plan's fee when it becomes ACTIVE is its total * percent / 100
# (rounded half up to the cent) plus the fixed part, never above the total; a merchant without
# a price of its own (accounts.User.fee_percent, fee_fixed) pays these. A refund keeps the fee
# unless BNPL_REFUND_RETURNS_FEE, which returns the refund's proportional share of it.
BNPL_MERCHANT_FEE_PERCENT = config("BNPL_MERCHANT_FEE_PERCENT", default="4.00", cast=Decimal)
BNPL_MERCHANT_FEE_FIXED = config("BNPL_MERCHANT_FEE_FIXED", default="0.30", cast=Decimal)
if not (0 <= BNPL_MERCHANT_FEE_PERCENT <= 100) or BNPL_MERCHANT_FEE_FIXED < 0:
    raise ImproperlyConfigured("BNPL_MERCHANT_FEE_PERCENT must be 0 to 100 and BNPL_MERCHANT_FEE_FIXED not negative.")
BNPL_REFUND_RETURNS_FEE = config("BNPL_REFUND_RETURNS_FEE", default=False, cast=bool)
# Settlements and payouts (DESIGN §6): merchants per settlement task (workers take chunks side
# by side), the payout gateway (a dotted path; the fake fails accounts ending 0002), and how
# long a payout may wait for the gateway's answer before the reconcile task asks again.
BNPL_SETTLEMENT_CHUNK_MERCHANTS = config("BNPL_SETTLEMENT_CHUNK_MERCHANTS", default=250, cast=int)
BNPL_PAYOUT_GATEWAY = config("BNPL_PAYOUT_GATEWAY", default="settlements.gateways.FakePayoutGateway")
BNPL_PAYOUT_RECONCILE_MINUTES = config("BNPL_PAYOUT_RECONCILE_MINUTES", default=10, cast=int)

# --- Merchant event webhooks (outbound) ---------------------------------------------------
BNPL_WEBHOOK_TIMEOUT_SECONDS = config("BNPL_WEBHOOK_TIMEOUT_SECONDS", default=10, cast=float)
# Retries back off exponentially (base, doubled each time, capped) for up to RETRY_HOURS.
BNPL_WEBHOOK_BACKOFF_BASE_SECONDS = config("BNPL_WEBHOOK_BACKOFF_BASE_SECONDS", default=60, cast=float)
BNPL_WEBHOOK_BACKOFF_MAX_SECONDS = config("BNPL_WEBHOOK_BACKOFF_MAX_SECONDS", default=6 * 3600, cast=float)
BNPL_WEBHOOK_RETRY_HOURS = config("BNPL_WEBHOOK_RETRY_HOURS", default=72, cast=float)
# Delivering to loopback or private addresses is for local development only (SSRF).
BNPL_WEBHOOK_ALLOW_PRIVATE_URLS = config("BNPL_WEBHOOK_ALLOW_PRIVATE_URLS", default=DEBUG, cast=bool)

# --- Notifications (email, SMS) -------------------------------------------------------------
BNPL_SMS_BACKEND = config("BNPL_SMS_BACKEND", default="events.sms.ConsoleSmsBackend")

EMAIL_BACKEND = config("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = config("EMAIL_HOST", default="localhost")
EMAIL_PORT = config("EMAIL_PORT", default=25, cast=int)
EMAIL_HOST_USER = config("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = config("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = config("EMAIL_USE_TLS", default=False, cast=bool)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = config("DEFAULT_FROM_EMAIL", default="BNPL <no-reply@bnpl.local>")

# --- Operations ---------------------------------------------------------------------------
# Bearer token a Prometheus scraper may use for /metrics (operators can always read it).
METRICS_TOKEN = config("METRICS_TOKEN", default="")

# --- HTTP limits ------------------------------------------------------------------------
# Bodies above this are answered 413 before any view reads them.
MAX_REQUEST_BODY_BYTES = config("MAX_REQUEST_BODY_BYTES", default=1024 * 1024, cast=int)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- Rate limits (core/throttling.py) ---------------------------------------------------
# "N/s", "N/min", "N/hour" or "N/day"; "off" for no limit. Counted in the default cache.
BNPL_THROTTLE_RATES = {
    # Each authenticated user: far above an app's or a merchant integration's usual pace;
    # stops a runaway client from taking the workers from everyone else.
    "user": config("BNPL_THROTTLE_USER", default="1200/min"),
    # Each anonymous address: it reaches only the credential endpoints, the API docs and
    # the health dashboard.
    "anon": config("BNPL_THROTTLE_ANON", default="60/min"),
    # Token, token refresh, logout and register, each, per address (as nginx.conf limits them).
    "auth": config("BNPL_THROTTLE_AUTH", default="10/min"),
    # Token requests naming one username, from any address: password guessing.
    "login": config("BNPL_THROTTLE_LOGIN", default="5/min"),
}
for _scope, _rate in BNPL_THROTTLE_RATES.items():
    if not re.fullmatch(r"\d+/[smhd][a-z]*|off", _rate.strip().lower()):
        raise ImproperlyConfigured(f"BNPL_THROTTLE_{_scope.upper()} reads like 60/min or 10/s (or off), not {_rate!r}.")
# Proxies in front of the service that append the client address to X-Forwarded-For (1
# behind nginx or an ingress). 0 trusts only the connection's address: a client could
# otherwise pick the address it is throttled as.
BNPL_TRUSTED_PROXIES = config("BNPL_TRUSTED_PROXIES", default=0, cast=int)

# --- REST framework, JWT, OpenAPI -------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.RememberedContentNegotiation",
    "DEFAULT_FILTER_BACKENDS": ["core.filters.ListFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PagePagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "core.problems.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.AnonThrottle", "core.throttling.UserThrottle"],
    "NUM_PROXIES": BNPL_TRUSTED_PROXIES,
}

# How long a process may answer a bearer token from the user row it read last (role,
# status, active). Money-moving services re-read their parties under lock whatever this
# says; a deactivated user is refused by every process within this many seconds.
BNPL_AUTH_USER_CACHE_SECONDS = config("BNPL_AUTH_USER_CACHE_SECONDS", default=5, cast=int)
# The health dashboard's figures, the analytics dashboard and /metrics' business series are
# aggregates over whole tables: served from the cache when computed less than this many
# seconds ago (beat computes them again every minute); 0 computes them on every request.
# A caller finding none cached waits at most FIGURES_WAIT_SECONDS for the one computation
# under way (bnpl.analytics.figures_cached), then gets a 503.
FIGURES_CACHE_SECONDS = config("FIGURES_CACHE_SECONDS", default=90, cast=int)
FIGURES_WAIT_SECONDS = config("FIGURES_WAIT_SECONDS", default=10, cast=float)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=config("JWT_ACCESS_MINUTES", default=15, cast=int)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=config("JWT_REFRESH_DAYS", default=1, cast=int)),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    # The public id, not the sequential primary key, goes into tokens.
    "USER_ID_FIELD": "user_id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
    # A refresh token is spent by its use: /auth/token/refresh/ answers a new one and
    # blacklists the one presented, so a stolen refresh token works once at most, and
    # /auth/logout/ can revoke one (accounts/services.py; expired rows pruned daily).
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "BNPL API",
    "DESCRIPTION": (
        "Buy Now, Pay Later platform: plans, installments, payments, refunds and debt status. "
        "Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`."
    ),
    "VERSION": "1.0.0",
    # No LICENSE file grants one: the API and its description are the owner's, all rights
    # reserved. API_LICENSE_URL names the published terms; until then, the service's home page.
    "LICENSE": {"name": "Proprietary", "url": config("API_LICENSE_URL", default="/")},
    # Relative: a client generated from the schema talks to the host that served it.
    "SERVERS": [{"url": "/", "description": "The host serving this schema"}],
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.add_throttled_responses",
        "core.schema.add_unavailable_responses",
        "core.schema.add_idempotent_replayed_header",
        "core.schema.mark_anonymous_operations",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "accounts.models.User.Role",
        "CustomerStatusEnum": "accounts.models.User.Status",
        "RefundWebhookStatusEnum": "refunds.services.WEBHOOK_STATUSES",
        "RefundWebhookAnswerStatusEnum": "refunds.webhooks.WEBHOOK_ANSWER_STATUSES",
        "SettlementPayoutStatusEnum": "settlements.models.Payout.Status",
    },
}

# --- Logging: JSON lines, request id, PII masked whatever the logger -------------------
LOG_LEVEL = config("LOG_LEVEL", default="INFO")
# Django's own logging defaults are not applied, so every record reaches the root
# handler below and passes through the masking filter.
LOGGING_CONFIG = None
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.logging.RequestIdFilter"},
        "mask_pii": {"()": "accounts.logging.MaskPiiFilter"},
    },
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "mask_pii"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.utils.autoreload": {"level": "WARNING"},
        # runserver's own request line repeats the access log of core.middleware.
        "django.server": {"level": "WARNING"},
    },
}
logging.config.dictConfig(LOGGING)

# --- Production switches ----------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = config("SECURE_SSL_REDIRECT", default=True, cast=bool)
    # TLS ends at the proxy (nginx / ingress), which tells us the original scheme.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = config("SECURE_HSTS_SECONDS", default=31536000, cast=int)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
