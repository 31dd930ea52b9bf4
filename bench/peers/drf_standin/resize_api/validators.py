"""What the real project checks of an upload: its extension against its format, its size in
bytes, its dimensions, and the sides asked for."""

import os

from django.core.exceptions import ValidationError
from django.core.files.images import get_image_dimensions

MAX_MB = 10
MAX_SIDE = 9999


def validate_image_size(image):
    if image.size > MAX_MB * 1024 * 1024:
        raise ValidationError(f"Max size of file is {MAX_MB} MB")


def validate_image_dimensions(image):
    width, height = get_image_dimensions(image)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValidationError(f"Width and height must be within 1..{MAX_SIDE} pixels")


def validate_image_extension(image):
    extension = os.path.splitext(image.name)[1].lower()
    if (extension, image.image.format) not in [(".jpg", "JPEG"), (".png", "PNG")]:
        raise ValidationError(f"Unsupported file [{image.image.format}] extension [{extension}]")


def validate_side(value):
    if not 1 <= value <= MAX_SIDE:
        raise ValidationError(f"A side must be within 1..{MAX_SIDE} pixels")
