"""Where the output's pixels come from: the output size and the region of the source it
shows, for each fit mode. Pure arithmetic, in the upright source's pixels."""

from __future__ import annotations

from dataclasses import dataclass

from src.tasks.resize_spec import ResizeSpec


@dataclass(frozen=True)
class Plan:
    size: tuple[int, int]  # output width, height
    box: tuple[float, float, float, float]  # source region shown: left, top, right, bottom

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per source pixel, along x and y."""
        left, top, right, bottom = self.box
        return self.size[0] / (right - left), self.size[1] / (bottom - top)


def plan(source: tuple[int, int], spec: ResizeSpec) -> Plan:
    """contain: the whole source, inside the box, aspect kept. cover: the box's aspect,
    centre-cropped from the source. fill: the whole source, stretched to the box.

    Without `enlarge` nothing is scaled up: contain stops at the source's size; cover and
    fill shrink the box, keeping its aspect, until it fits the source.
    """
    width, height = source
    if not (spec.width and spec.height) or spec.fit == "contain":
        scale = min(spec.width / width if spec.width else float("inf"),
                    spec.height / height if spec.height else float("inf"))
        if not spec.enlarge:
            scale = min(scale, 1.0)
        return Plan(_pixels(width * scale, height * scale), (0.0, 0.0, float(width), float(height)))
    box_w, box_h = spec.width, spec.height
    if not spec.enlarge:
        shrink = min(1.0, width / box_w, height / box_h)
        box_w, box_h = box_w * shrink, box_h * shrink
    if spec.fit == "fill":
        return Plan(_pixels(box_w, box_h), (0.0, 0.0, float(width), float(height)))
    scale = max(box_w / width, box_h / height)
    region_w, region_h = box_w / scale, box_h / scale
    left, top = (width - region_w) / 2, (height - region_h) / 2
    return Plan(_pixels(box_w, box_h), (left, top, left + region_w, top + region_h))


def _pixels(width: float, height: float) -> tuple[int, int]:
    return max(1, round(width)), max(1, round(height))
