"""The task's fields, with the real project's validators. As there, the model gives the
serializer its fields and is never saved: the task lives in Celery's result backend."""

from django.db import models

from .validators import validate_image_dimensions, validate_image_extension, validate_image_size, validate_side


class Task(models.Model):
    image = models.ImageField(validators=[validate_image_extension, validate_image_size, validate_image_dimensions])
    width = models.PositiveSmallIntegerField(validators=[validate_side])
    height = models.PositiveSmallIntegerField(validators=[validate_side])
