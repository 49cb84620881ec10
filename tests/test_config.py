"""Settings precedence: flags over `OPENLIVE_*` environment over the TOML file over defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from live.config import load_settings


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "openlive.toml"
    toml.write_text('port = 9001\nhost = "0.0.0.0"\ncode_deadline_s = 7.5\napi_keys = ["from-file"]\n')
    monkeypatch.setenv("OPENLIVE_PORT", "9002")
    monkeypatch.setenv("OPENLIVE_API_KEYS", "env-a, env-b")
    settings = load_settings({"port": 9003, "host": None}, toml)
    assert settings.port == 9003  # flag
    assert settings.api_keys == ["env-a", "env-b"]  # environment, comma-separated
    assert settings.host == "0.0.0.0"  # file
    assert settings.code_deadline_s == 7.5
    assert settings.max_code_attempts == 5  # default


def test_unknown_setting_in_file_is_rejected(tmp_path: Path) -> None:
    toml = tmp_path / "openlive.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings({}, toml)


def test_routing_by_name_alias_and_not_found() -> None:
    from live.backends.errors import BackendError
    from live.backends.registry import Backends
    from live.backends.scripted import Script, ScriptedBackend

    a = ScriptedBackend(Script(rules=[]), served_name="model-a")
    b = ScriptedBackend(Script(rules=[]), served_name="model-b")
    backends = Backends([a, b], aliases={"gemini-*": "model-b"})
    assert backends.resolve("models/model-a") is a
    assert backends.resolve("model-b") is b
    assert backends.resolve("models/gemini-live-2.5-flash-preview") is b
    with pytest.raises(BackendError) as missing:
        backends.resolve("models/nope", "v1alpha")
    assert missing.value.code == 1008
    assert missing.value.reason.startswith("models/nope is not found for API version v1alpha")
    assert len(missing.value.reason.encode()) <= 123


def test_sandbox_settings_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "openlive.toml"
    toml.write_text("[sandbox]\nslots = 3\nallow_weak_isolation = true\n")
    assert load_settings({}, toml).sandbox.slots == 3
    monkeypatch.setenv("OPENLIVE_SANDBOX__SLOTS", "4")
    settings = load_settings({}, toml)
    assert settings.sandbox.slots == 4
    assert settings.sandbox.allow_weak_isolation  # the file still counts for what the environment leaves


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        ({"executor": "mqtt://broker:1883", "sandbox": {"slots": 4}}, "set up each `openlive worker`"),
        ({"events_content": True}, "needs events"),
        ({"broker": {"username": "u"}}, "broker settings need"),
        ({"executor": "tcp://broker:1883"}, "executor"),
    ],
)
def test_mqtt_settings_that_would_be_ignored_are_refused(overrides: dict[str, Any], refusal: str) -> None:
    with pytest.raises(ValueError, match=re.escape(refusal)):
        load_settings(overrides)


def test_mqtt_settings_in_use() -> None:
    settings = load_settings(
        {"executor": "mqtt://broker:1883", "events": "mqtts://events:8883", "broker": {"username": "u"}}
    )
    assert settings.broker.config(settings.executor).credentials() == ("u", None)
    assert settings.broker.config(settings.events or "").endpoint() == ("events", 8883, True)
