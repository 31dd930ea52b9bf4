"""The Celery task: open the upload with Pillow, fit it into width×height with Lanczos,
save it over itself, and return its URL (the real project's `resize_img`, which resized to
exactly width×height; here the size is fitted as `Image.thumbnail` fits it, without its
draft and reducing gap, so the whole photo is decoded and resampled as there).

Saved as JPEG at quality 85, as the other systems of bench/peers.py are asked (the real
project kept Pillow's default, 75)."""

import logging

from celery import shared_task
from django.conf import settings
from PIL import Image

logger = logging.getLogger(__name__)

QUALITY = 85


def fitted(size, box):
    """The largest size of the same shape within `box`, never larger than `size`."""
    scale = min(box[0] / size[0], box[1] / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


@shared_task(bind=True)
def resize(self, width, height, image_path, image_name):
    self.update_state(state="PROGRESS", meta={"progress": 20})
    try:
        with Image.open(image_path) as original:
            image = original.resize(fitted(original.size, (width, height)), Image.LANCZOS)
            image.save(image_path, quality=QUALITY)
    except Exception as error:  # the real task answers a missing URL, not a failure
        logger.warning("resize failed: %s %s", image_path, error)
        return None
    return settings.IMAGES_URL + image_name
