from django.apps import AppConfig


class ResizeApiConfig(AppConfig):
    name = "resize_api"
