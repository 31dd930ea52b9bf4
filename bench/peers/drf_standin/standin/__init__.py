"""The Django project of the stand-in for overload127/drf_img_resize (bench/peers/drf.py).

As in that project, the Celery app is loaded with Django, so `resize.delay()` in a view
finds its broker."""

from .celery import app as celery_app

__all__ = ["celery_app"]
