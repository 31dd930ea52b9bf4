"""What a resize task asks for: its default format and its stored form."""

from __future__ import annotations

import pytest

from src.tasks.resize_spec import ResizeSpec


@pytest.mark.parametrize(("source", "format"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"),
                                                ("GIF", "jpeg"), ("BMP", "jpeg"), ("TIFF", "jpeg")])
def test_the_default_format_follows_the_source_when_we_write_it(source, format):
    assert ResizeSpec(10, None).resolved(source).format == format


def test_a_format_asked_for_is_kept():
    assert ResizeSpec(10, None, format="png").resolved("JPEG").format == "png"


def test_spelled_out_defaults_resolve_to_the_same_stored_form():
    left = ResizeSpec(10, None).resolved("JPEG")
    right = ResizeSpec(10, None, fit="contain", enlarge=False, format="jpeg", quality=85)
    assert left.to_json() == right.to_json()
    assert ResizeSpec.from_json(left.to_json()) == left
