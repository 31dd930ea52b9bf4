"""Settings of the stand-in: the real project's (Django 3.0's startproject, DRF, CORS
headers, Celery on Redis as broker and result backend with JSON, a log file for the
views), with its folders and Redis taken from the environment:

- STANDIN_VAR: a folder for media/, logging/ and the SQLite file (never used: no view
  touches the database, as in the real project);
- STANDIN_REDIS: host:port of the Redis (bench/peers/drf.py starts a private valkey).

DEBUG is off (the real project had it on: under gunicorn that only adds Django's
debug bookkeeping; the media route is in urls.py instead)."""

import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAR_DIR = os.environ.get("STANDIN_VAR", os.path.join(BASE_DIR, "var"))
REDIS_HOST, REDIS_PORT = os.environ.get("STANDIN_REDIS", "127.0.0.1:6379").split(":")

SECRET_KEY = "a stand-in for a benchmark; serves only 127.0.0.1"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "resize_api.apps.ResizeApiConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "standin.urls"
WSGI_APPLICATION = "standin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(VAR_DIR, "db.sqlite3")}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_L10N = True
USE_TZ = True

STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.path.join(VAR_DIR, "media")
IMAGES_URL = "/media/images/"
IMAGES_ROOT = os.path.join(MEDIA_ROOT, "images")

CELERY_BROKER_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_RESULT_BACKEND = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
CELERY_ACCEPT_CONTENT = ["application/json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"

REDIS_STORAGE_TIME = 60 * 60 * 24  # how long a task id is known to the check route

CORS_ORIGIN_ALLOW_ALL = False
CORS_ORIGIN_WHITELIST = ["http://localhost:8000"]

LOGGING_ROOT = os.path.join(VAR_DIR, "logging")
os.makedirs(LOGGING_ROOT, exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"simple": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}},
    "handlers": {
        "file": {
            "level": "DEBUG",
            "class": "logging.FileHandler",
            "filename": os.path.join(LOGGING_ROOT, "resize_api.log"),
            "formatter": "simple",
            "encoding": "UTF-8",
        },
        "console": {"level": "ERROR", "class": "logging.StreamHandler"},  # gunicorn's log: a 500's traceback
    },
    "loggers": {
        "resize_api.views": {"handlers": ["file"], "level": "DEBUG", "propagate": True},
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
