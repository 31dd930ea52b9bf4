"""The Celery app, configured from Django's settings (the CELERY_ names), as the real
project's api_img_resize/celery.py does (its nightly clean-up beat is left out)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "standin.settings")

app = Celery("standin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
