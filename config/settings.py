"""Django settings for the Usufruct hub.

With no environment set everything runs embedded: SQLite and kombu's filesystem
transport under ``var/``. ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to
PostgreSQL and a real broker without any other change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dj_database_url

from config.env import env_bool, env_int, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("USUFRUCT_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

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
    "marketplace",
    "compute",
    "ledger",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "marketplace.middleware.ServiceErrorPages",
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

DATABASES = {
    "default": dj_database_url.parse(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'hub.sqlite3'}"), conn_max_age=0)
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, hub worker) share the file: wait for the write lock
    # instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
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
WHITENOISE_USE_FINDERS = True
STATICFILES_DIRS = [BASE_DIR / "static"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog"
LOGOUT_REDIRECT_URL = "catalog"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
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
    "ENUM_NAME_OVERRIDES": {
        "PlanKindEnum": "marketplace.models.PricePlan.Kind",
        "LedgerKindEnum": "ledger.models.LedgerEntry.Kind",
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
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "hub"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False

# --- Usufruct -------------------------------------------------------------------------
USUFRUCT_HUB_KEY_FILE = Path(env_str("USUFRUCT_HUB_KEY_FILE", str(VAR_DIR / "hub_ed25519.pem")))
USUFRUCT_LOG_ORIGIN = env_str("USUFRUCT_LOG_ORIGIN", "usufruct.local/ledger")
USUFRUCT_PAILLIER_BITS = env_int("USUFRUCT_PAILLIER_BITS", 2048)
USUFRUCT_MESSAGE_TTL_SECONDS = env_int("USUFRUCT_MESSAGE_TTL_SECONDS", 3600)
USUFRUCT_PLATFORM_FEE_BPS = env_int("USUFRUCT_PLATFORM_FEE_BPS", 1000)
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
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("USUFRUCT_LOG_LEVEL", "INFO")},
}
