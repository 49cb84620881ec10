"""Demo functions a client declares and answers itself, so tool calls can be tried with no backend.

The web console (clients/web/tools.js) declares the same three and answers them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from protocol import FunctionDeclaration

_CONDITIONS = ("sunny", "cloudy", "light rain", "windy")


def get_weather(city: str = "") -> dict[str, Any]:
    digest = 0
    for ch in city.lower():
        digest = (digest * 31 + ord(ch)) % 1000
    return {"city": city, "forecast": _CONDITIONS[digest % 4], "temperature_c": 12 + digest % 15}


def turn_on_the_lights(room: str = "living room") -> dict[str, Any]:
    return {"result": "ok", "room": room}


def get_time() -> dict[str, Any]:
    return {"utc": datetime.now(UTC).isoformat(timespec="seconds")}


DECLARATIONS: dict[str, FunctionDeclaration] = {
    "get_weather": FunctionDeclaration(
        name="get_weather",
        description="Current weather in a city.",
        parameters={"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
    ),
    "turn_on_the_lights": FunctionDeclaration(
        name="turn_on_the_lights",
        description="Switch the lights on in a room.",
        parameters={"type": "OBJECT", "properties": {"room": {"type": "STRING"}}},
    ),
    "get_time": FunctionDeclaration(
        name="get_time", description="The current date and time (ISO 8601, UTC)."
    ),
}

_IMPLEMENTATIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "get_weather": get_weather,
    "turn_on_the_lights": turn_on_the_lights,
    "get_time": get_time,
}


def answer(name: str, args: dict[str, Any] | None) -> dict[str, Any]:
    """The `response` object for one call; a bad call is answered with an error, never raised."""
    implementation = _IMPLEMENTATIONS.get(name)
    if implementation is None:
        return {"error": f"unknown function {name}"}
    try:
        return implementation(**(args or {}))
    except TypeError as exc:
        return {"error": str(exc)}
