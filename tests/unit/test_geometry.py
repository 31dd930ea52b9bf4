"""The fit rules as a table: the output size and the source region each fit gives."""

from __future__ import annotations

import pytest

from src.jobs.geometry import plan
from src.tasks.resize_spec import ResizeSpec

CASES = [
    # source, (width, height, fit, enlarge) -> output size, source region shown
    ((2000, 1000), (800, None, "contain", False), (800, 400), (0, 0, 2000, 1000)),
    ((2000, 1000), (None, 100, "contain", False), (200, 100), (0, 0, 2000, 1000)),
    ((2000, 1000), (800, 800, "contain", False), (800, 400), (0, 0, 2000, 1000)),
    ((2000, 1000), (800, 800, "cover", False), (800, 800), (500, 0, 1500, 1000)),
    ((2000, 1000), (800, 800, "fill", False), (800, 800), (0, 0, 2000, 1000)),
    ((100, 50), (400, None, "contain", False), (100, 50), (0, 0, 100, 50)),
    ((100, 50), (400, None, "contain", True), (400, 200), (0, 0, 100, 50)),
    ((100, 50), (400, 400, "cover", False), (50, 50), (25, 0, 75, 50)),
    ((100, 50), (400, 400, "fill", False), (50, 50), (0, 0, 100, 50)),
    ((100, 50), (400, 400, "fill", True), (400, 400), (0, 0, 100, 50)),
    ((3, 10000), (1, None, "contain", False), (1, 3333), (0, 0, 3, 10000)),
    ((10000, 3), (10, None, "contain", False), (10, 1), (0, 0, 10000, 3)),  # never 0 pixels
]


@pytest.mark.parametrize(("source", "asked", "size", "box"), CASES)
def test_each_fit(source, asked, size, box):
    width, height, fit, enlarge = asked
    result = plan(source, ResizeSpec(width, height, fit=fit, enlarge=enlarge))
    assert result.size == size
    assert result.box == pytest.approx(box)


def test_scale_is_output_pixels_per_source_pixel():
    result = plan((2000, 1000), ResizeSpec(800, 800, fit="cover"))
    assert result.scale == pytest.approx((0.8, 0.8))
