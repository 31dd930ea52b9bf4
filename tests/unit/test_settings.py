"""Settings read from the environment: defaults, bounds, and one declaration each."""

from __future__ import annotations

import os

import pytest

from src.settings import Settings, SettingsError, declarations


def test_defaults():
    settings = Settings.from_env({})
    assert (settings.port, settings.workers, settings.max_upload_bytes) == (8000, 2, 20 * 1024 * 1024)
    assert settings.upload_dir == os.path.abspath("uploads")
    assert not settings.redis_url_given and not settings.scorer_url_given


def test_values_are_read_and_given_ones_known():
    settings = Settings.from_env({"PORT": " 9000 ", "SCORER_TIMEOUT": "0.5", "REDIS_URL": "redis://x:1/0",
                                  "API_KEYS": "ann:k1, bob:k2"})
    assert (settings.port, settings.scorer_timeout, settings.redis_url) == (9000, 0.5, "redis://x:1/0")
    assert settings.api_keys == {"k1": "ann", "k2": "bob"}
    assert settings.redis_url_given and not settings.scorer_url_given


@pytest.mark.parametrize(("env", "says"), [
    ({"PORT": "0"}, "at least 1"), ({"PORT": "eighty"}, "must be a number"), ({"WORKERS": "-1"}, "at least 1"),
    ({"SCORER_TIMEOUT": "0"}, "at least 0.001"), ({"API_KEYS": "nokey"}, "name:key"),
])
def test_bad_values_are_refused_with_their_name(env, says):
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)


def test_every_setting_has_a_variable_and_a_meaning_of_its_own():
    names = [declared.metadata["env"] for declared in declarations()]
    assert len(names) == len(set(names))
    assert all(declared.metadata["meaning"] for declared in declarations())
