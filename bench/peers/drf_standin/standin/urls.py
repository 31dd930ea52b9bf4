"""The API under /api/v1/resize_img/ (the real project's paths), and the resized files
under /media/ served by Django's static view, which the real project gets from
`static()` with DEBUG on."""

from django.conf import settings
from django.urls import include, path, re_path
from django.views.static import serve

urlpatterns = [
    path("api/v1/resize_img/", include("resize_api.urls", namespace="resize_api")),
    re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
]
