"""Settings for the LLMOps portal, read from the environment (or an env file: `.env`,
`PORTAL_ENV_FILE`, or the demo's `var/demo.env`; the order is in portal/config.py).

Every variable is listed, with a comment, in `.env.example`. One module serves
the demo, the tests and production: they differ only in their environment. A
missing or malformed variable is a `SettingError`: one line naming it and where to set it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import zoneinfo
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from csp.constants import NONE, SELF

from gateway.plugin import redisconn
from portal.config import PLACEHOLDER_SECRETS, Env
from portal.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env(BASE_DIR)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.required("DJANGO_SECRET_KEY")
if SECRET_KEY in PLACEHOLDER_SECRETS and not DEBUG:
    raise env.error("DJANGO_SECRET_KEY", "is the placeholder from .env.example (a long random string: "
                                         "python -c \"import secrets; print(secrets.token_urlsafe(50))\")")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys (comma separated). The first encrypts; all decrypt, so a key can
# be rotated by putting a new one in front.
PORTAL_ENCRYPTION_KEYS = env.list("PORTAL_ENCRYPTION_KEYS", default=[])
if not PORTAL_ENCRYPTION_KEYS:
    raise env.error("PORTAL_ENCRYPTION_KEYS", "is not set")
for _key in PORTAL_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        raise env.error("PORTAL_ENCRYPTION_KEYS", "holds a key that is not a Fernet key (32 url-safe base64-encoded "
                                                  "bytes: python -c \"from cryptography.fernet import Fernet; "
                                                  "print(Fernet.generate_key().decode())\")")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "mozilla_django_oidc",
    "django_celery_beat",
    "portal",
    "gateway",
    "evals",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",  # first: every line of the request carries its id
    "portal.middleware.HealthMiddleware",  # /healthz, /readyz before host checks and the HTTPS redirect
    "portal.metrics.RequestMetricsMiddleware",  # counts and times every request but the probes (/metrics)
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'portal.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A PostgreSQL that accepts and never answers must not hold a web worker (or /readyz) for minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The one-command demo: web, worker and beat share one SQLite file.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise env.error("TIME_ZONE", "is not a time zone name such as UTC or Europe/Paris") from None
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "var" / "static"))  # collectstatic writes here
# Production: `manage.py collectstatic` then STATIC_MANIFEST=true, and whitenoise serves hashed, compressed
# names with far-future cache headers (the manifest must exist: the demo and tests serve the app dirs as is).
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "portal.staticfiles.ManifestStaticStorage" if STATIC_MANIFEST
                    else "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Request bodies above this size are refused before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_048_576)

# Behind a TLS-terminating proxy (it must set X-Forwarded-Proto and strip the client's): secure cookies,
# HTTPS redirect and HSTS follow by default; each can be set apart.
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=BEHIND_TLS_PROXY)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SESSION_COOKIE_SECURE)
CSRF_COOKIE_HTTPONLY = True  # the pages send the form's token; no script reads the cookie
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=BEHIND_TLS_PROXY)
# Probes and the Prometheus scraper reach the web directly over HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if BEHIND_TLS_PROXY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content Security Policy (django-csp): scripts, styles, fonts and images from the portal's own static
# files only; no inline script or style (none in the templates: app.js sets what they need), no framing,
# forms post only here (SSO starts with a link, not a form).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")

# Accounts (portal/accounts.py). Where people reach the portal: the links in invitation and
# password-reset e-mails are built from it, never from the request's Host header.
PORTAL_PUBLIC_URL = env.str("PORTAL_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
# How long an invitation link works; a resend makes a new link (the old one stops working).
INVITATION_TTL_HOURS = env.int("INVITATION_TTL_HOURS", default=72)
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 3600)
# Failed sign-ins allowed per account and per client address, and password-reset e-mails per account and
# per address, within a window (portal/throttle.py). The address is REMOTE_ADDR: behind a proxy, have it
# give the client's address there (the PROXY protocol: gunicorn --proxy-protocol --proxy-allow-from).
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=10)
LOGIN_FAILURES_PER_ADDRESS = env.int("LOGIN_FAILURES_PER_ADDRESS", default=50)
PASSWORD_RESETS_PER_ACCOUNT = env.int("PASSWORD_RESETS_PER_ACCOUNT", default=3)
PASSWORD_RESETS_PER_ADDRESS = env.int("PASSWORD_RESETS_PER_ADDRESS", default=20)
THROTTLE_WINDOW_SECONDS = env.int("THROTTLE_WINDOW_SECONDS", default=900)

# Single sign-on through OpenID Connect (mozilla-django-oidc; portal/web/accounts/oidc.py). Offered
# on the sign-in page when OIDC_RP_CLIENT_ID is set; the provider's endpoints are then required.
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
# The userinfo claim that lists the user's groups at the provider.
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
# Groups and e-mail domains to an organization and role, applied at each sign-in (roles are only
# ever raised, never lowered; a domain matches only a verified address), e.g.
# {"group:eng": ["acme", "member"], "domain:acme.com": ["acme", "viewer"]}.
OIDC_ORG_MAP: dict[str, list[str]] = env.json("OIDC_ORG_MAP", default={})
if not isinstance(OIDC_ORG_MAP, dict) or not all(
        isinstance(k, str) and k.partition(":")[0] in ("group", "domain") and k.partition(":")[2]
        and isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
        and v[1] in ("admin", "member", "viewer") for k, v in OIDC_ORG_MAP.items()):
    raise env.error("OIDC_ORG_MAP", 'must be a JSON object of "group:<name>" or "domain:<domain>" to '
                                    '["<org slug>", "admin" | "member" | "viewer"]')
OIDC_ORG_MAP = {k.lower() if k.startswith("domain:") else k: v for k, v in OIDC_ORG_MAP.items()}
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
if OIDC_ENABLED and not all((OIDC_RP_CLIENT_SECRET, OIDC_OP_AUTHORIZATION_ENDPOINT, OIDC_OP_TOKEN_ENDPOINT,
                             OIDC_OP_USER_ENDPOINT, OIDC_OP_JWKS_ENDPOINT)):
    _missing = next(v for v in ("OIDC_RP_CLIENT_SECRET", "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT",
                                "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT") if not globals()[v])
    raise env.error(_missing, "is not set (OIDC_RP_CLIENT_ID is set: single sign-on needs it)")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
OIDC_AUTHENTICATION_CALLBACK_URL = "web:oidc_authentication_callback"
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("portal.web.accounts.oidc.PortalOIDCBackend")

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "portal.api.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "COERCE_DECIMAL_TO_STRING": False,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "LLMOps Portal API",
    "DESCRIPTION": "Organizations, teams, projects, provider credentials, model routes and virtual keys.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: the docs work offline, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No deep links: they put a link inside each operation's button (axe-core: nested-interactive);
    # no syntax highlighting: its theme's colours fail WCAG AA contrast.
    "SWAGGER_UI_SETTINGS": {"deepLinking": False, "syntaxHighlight": False},
    "ENUM_NAME_OVERRIDES": {
        "OrgRoleEnum": "portal.models.OrgRole.choices",
        "BudgetPeriodEnum": "portal.models.BudgetPeriod.choices",
        "TeamRoleEnum": "portal.models.TeamRole.choices",
        "KeyStatusEnum": "gateway.models.KeyStatus.choices",
        "RunStatusEnum": "evals.models.RunStatus.choices",
        "ScoreStatusEnum": "evals.models.ScoreStatus.choices",
    },
}

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
# --- Redis Sentinel (helper F): redis+sentinel://... URLs (gateway/plugin/redisconn.py) ---
for _name, _url in (("REDIS_URL", REDIS_URL), ("CELERY_BROKER_URL", CELERY_BROKER_URL)):
    try:
        redisconn.parse_sentinel(_url)
    except ValueError as _exc:
        raise env.error(_name, f"is not a usable Redis URL ({_exc})")
    if not redisconn.parse_sentinel(_url) and _url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        raise env.error(_name, "is not a Redis URL (redis://host:6379/0, rediss://..., unix:///path, "
                               "or redis+sentinel://host:26379/<service>/0)")
CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = redisconn.celery_broker(CELERY_BROKER_URL)
if CELERY_BROKER_TRANSPORT_OPTIONS:
    os.environ.pop("CELERY_BROKER_URL", None)  # Celery prefers the variable to the settings: ours are kombu's form
# --- end Redis Sentinel ---
CELERY_RESULT_BACKEND = None
# Queues: `sync`, `usage`, `evals`. Each task names its queue in its decorator (and is named
# `<module>.<function>`; tests/portal/test_tasks_convention.py holds every task to it), so there is
# no router by name: one would go stale when a task moves. The default is only for a task that
# forgets, which that test refuses.
CELERY_TASK_DEFAULT_QUEUE = "sync"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's consumer with a repair that keeps a worker alive when its Redis restarts under a running task.
CELERY_WORKER_CONSUMER = "portal.celery_consumer:Consumer"
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# django-celery-beat's database scheduler that also writes a heartbeat `manage.py doctor` reads (portal/ops/beat.py).
CELERY_BEAT_SCHEDULER = "portal.ops.beat:HeartbeatScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Where users reach the gateway (LiteLLM proxy); used in the Cline setup.
GATEWAY_PUBLIC_URL = env.str("GATEWAY_PUBLIC_URL", default="http://127.0.0.1:4000").rstrip("/")
# managed: the plugin reads what the portal pushes to Redis.
# litellm-admin: the portal drives LiteLLM's own management API.
# Where the portal's workers reach the gateway for judge and benchmark calls.
GATEWAY_INTERNAL_URL = env.str("GATEWAY_INTERNAL_URL", default=GATEWAY_PUBLIC_URL).rstrip("/")
# Every proxy `manage.py doctor` checks (comma separated); default: the internal URL.
GATEWAY_URLS = [u.rstrip("/") for u in env.list("GATEWAY_URLS", default=[])] or [GATEWAY_INTERNAL_URL]
GATEWAY_MODE = env.str("GATEWAY_MODE", default="managed")  # checked by gateway.backends at start-up
# A backend is a module (or package) of gateway/backends/ named for its mode (gateway/backends/base.py).
_backend = BASE_DIR / "gateway" / "backends" / GATEWAY_MODE.replace("-", "_")
if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", GATEWAY_MODE) or not (
        _backend.with_suffix(".py").is_file() or (_backend / "__init__.py").is_file()):
    raise env.error("GATEWAY_MODE", "names no gateway backend (managed, or litellm-admin: a module of "
                                    "gateway/backends/)")
LITELLM_ADMIN_URL = env.str("LITELLM_ADMIN_URL", default="http://127.0.0.1:4000").rstrip("/")
LITELLM_MASTER_KEY = env.str("LITELLM_MASTER_KEY", default="")
# Seals provider secrets and Langfuse secret keys in the gateway's Redis documents; only the
# portal and the proxies hold it (gateway/plugin/sealed.py). Comma separated: the first seals,
# all unseal. Default: derived from DJANGO_SECRET_KEY (`manage.py gateway` hands it to the
# proxy); set it when the proxies are started otherwise (docker-compose.yml).
GATEWAY_SEALING_KEYS = env.list("GATEWAY_SEALING_KEY", default=[]) or [
    hmac.new(SECRET_KEY.encode(), b"llmops-portal gateway sealing key", hashlib.sha256).hexdigest()]
if any(len(k) < 32 for k in GATEWAY_SEALING_KEYS):
    raise env.error("GATEWAY_SEALING_KEY", "holds a key shorter than 32 characters")

# Seconds the portal waits for one answer from Langfuse (it retries 429, 5xx and timeouts).
LANGFUSE_TIMEOUT = env.float("LANGFUSE_TIMEOUT", default=10.0)
# The Langfuse stand-in that `make demo` starts when no Langfuse is configured (labelled so in the UI).
LANGFUSE_STANDIN_URL = env.str("LANGFUSE_STANDIN_URL", default="")
# Uploads (dataset items, human labels) are parsed by the web process: bounded in size and rows.
EVALS_MAX_UPLOAD_BYTES = env.int("EVALS_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
EVALS_MAX_UPLOAD_ROWS = env.int("EVALS_MAX_UPLOAD_ROWS", default=50_000)
# A scheduled run's window ends this many seconds before the run starts: Langfuse lists a trace
# only once it has ingested it (asynchronously), and a window that ended "now" would miss it for good.
EVALS_INGESTION_DELAY_SECONDS = env.int("EVALS_INGESTION_DELAY_SECONDS", default=120)

# Internal networks (CIDR) and host names that tenant-entered URLs (Langfuse hosts, alert
# webhooks, provider api_base) may point at; everything internal is refused otherwise
# (portal/outbound.py). Cloud metadata addresses are refused always.
PORTAL_OUTBOUND_ALLOWED_NETWORKS = env.list("PORTAL_OUTBOUND_ALLOWED_NETWORKS", default=[])

# Idempotency-Key records are kept this long.
IDEMPOTENCY_TTL_HOURS = env.int("IDEMPOTENCY_TTL_HOURS", default=24)
# Longest grace period a key rotation may give the old key.
KEY_ROTATION_MAX_GRACE_SECONDS = env.int("KEY_ROTATION_MAX_GRACE_SECONDS", default=30 * 24 * 3600)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise env.error("LOG_LEVEL", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
# plain: one readable line; json: one JSON object a line (time, level, logger, message, request_id, extras).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise env.error("LOG_FORMAT", "must be plain or json")
LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)

# --- Metrics ---
# GET /metrics (portal/metrics.py) answers a bearer token METRICS_TOKEN, and clients in
# METRICS_ALLOWED_NETWORKS (CIDR) without one; anyone else (everyone, when neither is set) gets 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise env.error("METRICS_ALLOWED_NETWORKS", f"holds {_network!r}, which is not a network such as "
                        "10.0.0.0/8") from None
