"""Django settings for the Usufruct hub.

With no environment set everything runs embedded: SQLite and kombu's filesystem
transport under ``var/``. ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to
PostgreSQL and a real broker without any other change.

``DEBUG`` is off unless ``DJANGO_DEBUG=1``. ``USUFRUCT_PROFILE=production`` is for a
deployment behind a TLS-terminating proxy: it refuses to start without
``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS`` and turns on HTTPS-only cookies,
the SSL redirect and HSTS, so that ``manage.py check --deploy`` is clean.
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("USUFRUCT_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

PROFILE = env_str("USUFRUCT_PROFILE", "embedded")
if PROFILE not in {"embedded", "production"}:
    raise ImproperlyConfigured(f"USUFRUCT_PROFILE must be embedded or production, got {PROFILE!r}")
PRODUCTION = PROFILE == "production"
DEBUG = env_bool("DJANGO_DEBUG", False)


def _embedded_secret_key(path: Path) -> str:
    """The embedded profile's key: made once, kept in the var dir (0600), shared by its processes."""
    if not path.exists():
        # Written aside and linked into place: processes starting together all read one key.
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off with USUFRUCT_PROFILE=production")
    if not os.environ.get("DJANGO_SECRET_KEY"):
        raise ImproperlyConfigured("USUFRUCT_PROFILE=production requires DJANGO_SECRET_KEY (50+ random characters)")
    if not os.environ.get("DJANGO_ALLOWED_HOSTS"):
        raise ImproperlyConfigured("USUFRUCT_PROFILE=production requires DJANGO_ALLOWED_HOSTS (comma-separated)")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _embedded_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

if PRODUCTION:
    # Behind a proxy that terminates TLS: gunicorn trusts its X-Forwarded-Proto from
    # 127.0.0.1 (forwarded_allow_ips), so request.is_secure() is right without
    # SECURE_PROXY_SSL_HEADER.
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env_int("USUFRUCT_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("USUFRUCT_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("USUFRUCT_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = [o for o in env_str("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "marketplace",
    "compute",
    "ledger",
]

MIDDLEWARE = [
    # First: whatever answers an /api/ request with an error below it answers in JSON.
    "marketplace.middleware.ApiErrorsAreJson",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "marketplace.middleware.ServiceErrorPages",
    # Last, as django-axes asks: turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
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
                "marketplace.context.current_org",
            ],
        },
    },
]
WSGI_APPLICATION = "config.wsgi.application"

# Connections are kept between requests and tasks (a hub worker would otherwise open one per
# batch of node replies: 30-50 ms each), and checked before each reuse.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'hub.sqlite3'}"),
        conn_max_age=env_int("USUFRUCT_DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, hub worker) share the file: wait for the write lock
    # instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out login before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes), in every profile: after 5 failed logins for one
# username from one address, that pair is locked out for 15 minutes (HTTP 429), even
# with the right password. Keyed on the pair so that nobody can lock a user out from
# everywhere by guessing at its name.
AXES_FAILURE_LIMIT = env_int("USUFRUCT_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("USUFRUCT_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves the static files with DEBUG off too. Embedded: straight from the
# apps and static/ (no collectstatic step). Production: from STATIC_ROOT, hashed and
# compressed, after `manage.py collectstatic`.
WHITENOISE_USE_FINDERS = not PRODUCTION
if PRODUCTION:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog"
LOGOUT_REDIRECT_URL = "catalog"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    # The API speaks JSON only (the pages are Django views with their own forms).
    "DEFAULT_PARSER_CLASSES": ["marketplace.api_input.StrictJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "marketplace.api_input.StrictPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "marketplace.api_schema.UsufructSchema",
    "EXCEPTION_HANDLER": "marketplace.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Usufruct API",
    "DESCRIPTION": "Data marketplace: compute-only usage rights, federated jobs, signed ledger.",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "marketplace.api_schema.add_components",
    ],
    "ENUM_NAME_OVERRIDES": {
        "PlanKindEnum": "marketplace.models.PricePlan.Kind",
        "LedgerKindEnum": "ledger.models.LedgerEntry.Kind",
        "OrderStatusEnum": "marketplace.models.Order.Status",
        "RightStatusEnum": "marketplace.models.UsageRight.Status",
        "JobStatusEnum": "compute.models.Job.Status",
        "NodeStatusEnum": "marketplace.models.Node.Status",
        "OfferStatusEnum": "marketplace.models.Offer.Status",
        "PartyStatusEnum": "compute.models.JobParty.Status",
    },
}

# --- Celery: the federation transport -------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "store_processed": False,
        "polling_interval": 0.2,  # the default 1 s adds a second to every hop of a job
        "control_folder": str(BROKER_DIR / "control"),  # exchange tables; the default is ./control
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "hub"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False
# Node replies are taken off the ``hub`` queue in batches (compute.tasks.receive, celery-batches):
# up to this many in one transaction, or what came within the wait. A worker must be allowed to
# hold a whole batch unacknowledged, hence the prefetch.
USUFRUCT_INTAKE_BATCH = env_int("USUFRUCT_INTAKE_BATCH", 100)
USUFRUCT_INTAKE_WAIT_SECONDS = env_int("USUFRUCT_INTAKE_WAIT_MS", 50) / 1000
CELERY_WORKER_PREFETCH_MULTIPLIER = 2 * USUFRUCT_INTAKE_BATCH
USUFRUCT_LEDGER_WAKE_MS = env_int("USUFRUCT_LEDGER_WAKE_MS", 250)  # the ledger writer's wake-ups (ledger.writer)

# --- Usufruct -------------------------------------------------------------------------
USUFRUCT_HUB_KEY_FILE = Path(env_str("USUFRUCT_HUB_KEY_FILE", str(VAR_DIR / "hub_ed25519.pem")))
# Where the demo nodes keep their keys, data and job state (each node its own folder).
USUFRUCT_NODES_DIR = Path(env_str("USUFRUCT_NODES_DIR", str(VAR_DIR / "nodes")))
USUFRUCT_LOG_ORIGIN = env_str("USUFRUCT_LOG_ORIGIN", "usufruct.local/ledger")
USUFRUCT_PAILLIER_BITS = env_int("USUFRUCT_PAILLIER_BITS", 2048)
USUFRUCT_MESSAGE_TTL_SECONDS = env_int("USUFRUCT_MESSAGE_TTL_SECONDS", 3600)
# A retirement (lr_retire, psi_forget) is asked again until answered, at most this many times (three
# days at the default TTL); then the node's silence is on the ledger as a refusal, code "unanswered".
USUFRUCT_RETIREMENT_ATTEMPTS = env_int("USUFRUCT_RETIREMENT_ATTEMPTS", 72)
USUFRUCT_PLATFORM_FEE_BPS = env_int("USUFRUCT_PLATFORM_FEE_BPS", 1000)
# The Paillier key size of a value preview's labels (the consumer's node proves each one a bit).
USUFRUCT_PREVIEW_KEY_BITS = env_int("USUFRUCT_PREVIEW_KEY_BITS", 2048)
# Who issues the invoices (the operator sells as the merchant of record and pays providers) and the tax on them.
USUFRUCT_OPERATOR = {
    "name": env_str("USUFRUCT_OPERATOR_NAME", "Usufruct Data Exchange B.V."),
    "address": env_str("USUFRUCT_OPERATOR_ADDRESS", "Herengracht 1\n1015 BA Amsterdam\nNetherlands"),
    "tax_id": env_str("USUFRUCT_OPERATOR_TAX_ID", "NL000000000B01"),
}
USUFRUCT_TAX = {"name": env_str("USUFRUCT_TAX_NAME", "VAT"), "rate_bps": env_int("USUFRUCT_TAX_BPS", 2000)}

# Regulator alerts: a dataset whose lifetime ε is spent to this fraction; a witness that has not
# co-signed a checkpoint older than this many seconds.
USUFRUCT_EPSILON_ALERT_FRACTION = float(os.environ.get("USUFRUCT_EPSILON_ALERT_FRACTION", "0.8"))
USUFRUCT_WITNESS_GRACE = env_int("USUFRUCT_WITNESS_GRACE", 600)

# Budget alerts and other mail: printed to the console in the embedded profile; production
# sends through SMTP (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS).
EMAIL_BACKEND = env_str(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if PROFILE == "embedded"
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_str("EMAIL_USE_TLS", "") in {"1", "true", "yes"}
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "billing@usufruct.local")
USUFRUCT_JOB_STALE_SECONDS = env_int("USUFRUCT_JOB_STALE_SECONDS", 900)

# --- Ledger ---------------------------------------------------------------------------------
# Seconds between scheduled checkpoints (Celery beat, hub queue); one is also signed on demand.
USUFRUCT_CHECKPOINT_INTERVAL = env_int("USUFRUCT_CHECKPOINT_INTERVAL", 60)
# Only under pytest: lets Django's test flush TRUNCATE ledger tables (docs/decisions/0001).
USUFRUCT_LEDGER_ALLOW_TRUNCATE = env_bool("USUFRUCT_LEDGER_ALLOW_TRUNCATE", "pytest" in sys.modules)
CELERY_BEAT_SCHEDULE = {
    "ledger-checkpoint": {
        "task": "ledger.tasks.checkpoint_scheduled",
        "schedule": float(USUFRUCT_CHECKPOINT_INTERVAL),
        "options": {"queue": "hub", "expires": float(USUFRUCT_CHECKPOINT_INTERVAL)},
    },
}
CELERY_BEAT_SCHEDULE |= {
    "compute-resend-unanswered": {
        "task": "usufruct.hub.resend_unanswered",
        "schedule": 60.0,
        "options": {"queue": "hub"},
    },
    "compute-fail-stale-jobs": {"task": "usufruct.hub.fail_stale_jobs", "schedule": 60.0, "options": {"queue": "hub"}},
    "compute-request-attestations": {
        "task": "usufruct.hub.request_attestations",
        "schedule": float(env_int("USUFRUCT_ATTEST_INTERVAL", 60)),
        "options": {"queue": "hub"},
    },
    "marketplace-expire-rights": {"task": "usufruct.hub.expire_rights", "schedule": 300.0, "options": {"queue": "hub"}},
    # Each day, the previous month's invoices, credit notes and statements (idempotent: what is
    # on a document already is never issued again), so a month is issued once it has ended.
    "marketplace-issue-documents": {
        "task": "marketplace.tasks.documents_issue_due",
        "schedule": 3600.0,
        "options": {"queue": "hub"},
    },
    # Consumers' monthly budget alerts: one email per alert and month once spending reaches it.
    "marketplace-budget-alerts": {
        "task": "marketplace.tasks.budget_alerts_check",
        "schedule": float(env_int("USUFRUCT_BUDGET_ALERT_INTERVAL", 300)),
        "options": {"queue": "hub"},
    },
    # The ledger writer is woken by each acceptance; this is the backstop for a lost wake-up.
    "ledger-integrate-pending": {
        "task": "ledger.tasks.integrate_pending",
        "schedule": 2.0,
        "options": {"queue": "hub", "expires": 2.0},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("USUFRUCT_LOG_LEVEL", "INFO")},
}
