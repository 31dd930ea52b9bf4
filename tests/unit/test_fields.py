"""The form fields of POST /, read without a server: each bad value is a 400 naming its field."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from src.handlers import fields
from src.tasks.resize_spec import ResizeSpec
from src.web.errors import ApiError


def refused(call, *args) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(("form", "kind"), [
    ({"name": "Ann"}, "score"),
    ({"width": "10"}, "resize"),
    ({"height": "10", "fit": "cover"}, "resize"),
])
def test_the_kind_of_task(form, kind):
    assert fields.task_kind(MultiDict(form)) == kind


@pytest.mark.parametrize(("form", "field", "code"), [
    ({}, "name", "missing_field"),
    ({"fit": "cover"}, "width", "missing_field"),
    ({"name": "Ann", "width": "10"}, "width", "conflicting_fields"),
])
def test_a_form_that_is_neither_kind(form, field, code):
    error = refused(fields.task_kind, MultiDict(form))
    assert (error.field, error.code) == (field, code)


@pytest.mark.parametrize(("raw", "name"), [("  Ann  Lee ", "Ann  Lee"), ("e\u0301", "\u00e9"), ("R2D2", "R2D2")])
def test_a_name_is_trimmed_and_in_nfc(raw, name):
    assert fields.name(MultiDict({"name": raw})) == name


@pytest.mark.parametrize("raw", ["", "   ", "x" * 101, "123", "Ann\x00", "Ann\u2028Lee", "---"])
def test_a_bad_name(raw):
    assert refused(fields.name, MultiDict({"name": raw})).field == "name"


def test_resize_settings_with_their_defaults():
    spec = fields.resize_spec(MultiDict({"width": "80", "format": "JPG", "enlarge": "1"}), 4096)
    assert spec == ResizeSpec(80, None, fit="contain", enlarge=True, format="jpeg", quality=85)


@pytest.mark.parametrize(("field", "value"), [
    ("width", "0"), ("width", "4097"), ("width", "1.5"), ("width", "-3"), ("width", "١٢"), ("height", "x"),
    ("quality", "0"), ("quality", "101"), ("fit", "squash"), ("enlarge", "yes"), ("format", "gif"),
])
def test_a_bad_resize_setting(field, value):
    form = MultiDict({"width": "10", field: value})
    assert refused(fields.resize_spec, form, 4096).field == field
