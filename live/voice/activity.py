"""When the user speaks: a pure state machine over speech probabilities, configured by the setup's
`automaticActivityDetection`. No I/O and no clock: time is counted in frames, so it is tested alone.

Sensitivity (Gemini defaults are HIGH for both) sets the probability thresholds; `prefixPaddingMs` is the
speech needed before a start is committed and `silenceDurationMs` the silence that ends it. Unset, they
follow the sensitivity: a HIGH start commits after 64 ms, a LOW one after 192 ms; a HIGH end after
500 ms of silence, a LOW one after 1000 ms.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol import AutomaticActivityDetection, ProtocolError

_START = {  # sensitivity -> (probability that counts as speech, default prefix padding ms)
    "START_SENSITIVITY_HIGH": (0.5, 64),
    "START_SENSITIVITY_LOW": (0.8, 192),
}
_END = {  # sensitivity -> (probability below which a frame is silence, default silence ms)
    "END_SENSITIVITY_HIGH": (0.35, 500),
    "END_SENSITIVITY_LOW": (0.15, 1000),
}
_FIELD = "setup.realtimeInputConfig.automaticActivityDetection"


@dataclass(frozen=True)
class ActivityParams:
    start_threshold: float
    end_threshold: float
    start_ms: int
    silence_ms: int

    @classmethod
    def from_setup(cls, config: AutomaticActivityDetection | None) -> ActivityParams:
        config = config or AutomaticActivityDetection()
        start = _choice(_START, config.start_of_speech_sensitivity, "START_SENSITIVITY", "startOfSpeech")
        end = _choice(_END, config.end_of_speech_sensitivity, "END_SENSITIVITY", "endOfSpeech")
        for name, value in (
            ("prefixPaddingMs", config.prefix_padding_ms),
            ("silenceDurationMs", config.silence_duration_ms),
        ):
            if value is not None and not 0 <= value <= 60_000:
                raise ProtocolError(1007, f"Invalid value at '{_FIELD}.{name}': {value} (0 to 60000).")
        return cls(
            start_threshold=start[0],
            end_threshold=end[0],
            start_ms=start[1] if config.prefix_padding_ms is None else config.prefix_padding_ms,
            silence_ms=end[1] if config.silence_duration_ms is None else config.silence_duration_ms,
        )


def _choice(
    table: dict[str, tuple[float, int]], value: str | None, prefix: str, name: str
) -> tuple[float, int]:
    key = f"{prefix}_HIGH" if value in (None, f"{prefix}_UNSPECIFIED") else value
    if key not in table:
        raise ProtocolError(1007, f"Invalid value at '{_FIELD}.{name}Sensitivity': {value!r}.")
    return table[key]


class Activity(enum.Enum):
    START = "start"
    END = "end"


class ActivityTracker:
    """quiet -> starting -> speaking -> stopping -> quiet, one probability per frame."""

    def __init__(self, params: ActivityParams, frame_ms: float) -> None:
        self._params = params
        self._frame_ms = frame_ms
        self.speaking = False
        self._run_ms = 0.0  # speech so far while starting, silence so far while speaking

    def push(self, probability: float) -> Activity | None:
        p = self._params
        if not self.speaking:
            self._run_ms = self._run_ms + self._frame_ms if probability >= p.start_threshold else 0.0
            if self._run_ms > 0 and self._run_ms >= p.start_ms:
                self.speaking, self._run_ms = True, 0.0
                return Activity.START
            return None
        self._run_ms = self._run_ms + self._frame_ms if probability < p.end_threshold else 0.0
        if self._run_ms >= max(p.silence_ms, self._frame_ms):
            self.speaking, self._run_ms = False, 0.0
            return Activity.END
        return None

    def reset(self) -> None:
        self.speaking, self._run_ms = False, 0.0
