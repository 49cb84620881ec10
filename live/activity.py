"""Realtime input and user activity: where a user turn starts and ends, what it holds, what it interrupts.

With automatic activity detection (the default) each `realtimeInput.text` is a whole user turn. With
`automaticActivityDetection.disabled` the client marks the turn itself with `activityStart` and
`activityEnd`: text between them is the turn; text sent outside them joins the next turn under
`turnCoverage: TURN_INCLUDES_ALL_INPUT`; under the default, TURN_INCLUDES_ONLY_ACTIVITY, it would belong
to no turn, so it is refused rather than lost. The start of activity interrupts the model's turn unless
`activityHandling` is NO_INTERRUPTION; either way no new turn starts while an activity is open. (Audio
and video are refused by `live/parity.py` until voice lands.)
"""

from __future__ import annotations

import logging
from typing import Protocol

from protocol import Content, Part, ProtocolError, RealtimeInput, RealtimeInputConfig

log = logging.getLogger("openlive.activity")

START_OF_ACTIVITY_INTERRUPTS = "START_OF_ACTIVITY_INTERRUPTS"
NO_INTERRUPTION = "NO_INTERRUPTION"
ALL_INPUT = "TURN_INCLUDES_ALL_INPUT"
_HANDLING = {None, "ACTIVITY_HANDLING_UNSPECIFIED", START_OF_ACTIVITY_INTERRUPTS, NO_INTERRUPTION}
_COVERAGE = {
    None,
    "TURN_COVERAGE_UNSPECIFIED",
    "TURN_INCLUDES_ONLY_ACTIVITY",
    ALL_INPUT,
    "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",  # for text, the same as ONLY_ACTIVITY
}


class Turns(Protocol):
    """What activity asks of the session (`Session` implements it)."""

    async def interrupt(self, reason: str) -> bool: ...

    async def user_input(
        self, contents: list[Content], respond: bool = True, interrupts: bool = True
    ) -> None: ...

    def hold(self, held: bool) -> None:
        """While held, no new turn starts (the user has the floor)."""
        ...


class Activity:
    """One session's realtime input; a voice pipeline reports speech through `start` and `end` too."""

    def __init__(self, config: RealtimeInputConfig | None, turns: Turns) -> None:
        if config is not None and config.activity_handling not in _HANDLING:
            raise ProtocolError(
                1007, f"Invalid realtimeInputConfig.activityHandling {config.activity_handling!r}."
            )
        if config is not None and config.turn_coverage not in _COVERAGE:
            raise ProtocolError(1007, f"Invalid realtimeInputConfig.turnCoverage {config.turn_coverage!r}.")
        detection = config.automatic_activity_detection if config else None
        self.automatic = not (detection and detection.disabled)
        self.interrupts = (config.activity_handling if config else None) != NO_INTERRUPTION
        self._all_input = (config.turn_coverage if config else None) == ALL_INPUT
        self._turns = turns
        self._open = False
        self._parts: list[Part] = []  # of the turn being gathered

    async def receive(self, rt: RealtimeInput) -> None:
        """One `realtimeInput` message (the SDK sets one field; a raw client may set several): text and
        activity marks; the media fields never get here (refused until voice lands)."""
        if (rt.activity_start is not None or rt.activity_end is not None) and self.automatic:
            raise ProtocolError(
                1007,
                "Invalid realtimeInput: activityStart/activityEnd need "
                "realtimeInputConfig.automaticActivityDetection.disabled.",
            )
        if rt.activity_start is not None:
            await self.start()
        if rt.text:
            await self._text(rt.text)
        if rt.activity_end is not None:
            await self.end()

    async def start(self) -> None:
        """The user starts speaking (activityStart, or the VAD): interrupt unless NO_INTERRUPTION."""
        if self._open:
            raise ProtocolError(1007, "Invalid realtimeInput: activityStart while an activity is open.")
        self._open = True
        self._turns.hold(True)
        if self.interrupts:
            await self._turns.interrupt("activity")

    async def end(self, parts: list[Part] | None = None) -> None:
        """The user stops: what the activity held (plus `parts`, e.g. a transcript) is the user turn."""
        if not self._open:
            raise ProtocolError(1007, "Invalid realtimeInput: activityEnd without activityStart.")
        self._open = False
        turn, self._parts = [*self._parts, *(parts or [])], []
        if turn:
            await self._turns.user_input([Content(role="user", parts=turn)], interrupts=False)
        else:
            log.info("an activity without content ended: no turn")
        self._turns.hold(False)

    async def _text(self, text: str) -> None:
        if self.automatic:  # each text is a whole turn
            content = Content(role="user", parts=[Part(text=text)])
            await self._turns.user_input([content], interrupts=self.interrupts)
        elif self._open or self._all_input:
            self._parts.append(Part(text=text))
        else:
            raise ProtocolError(
                1007,
                "Invalid realtimeInput: text outside an activity needs turnCoverage TURN_INCLUDES_ALL_INPUT.",
            )
