"""The session's writer: order kept, queued text deltas merged into one message, none held back when idle.

Driven through the `Transport` interface the session uses (a recorder stands in for the socket, since
what is under test is when and what the writer sends, not the socket).
"""

from __future__ import annotations

import asyncio
import json
import logging

from live.outbox import Close, Outbox, write
from live.turns import MAX_TEXT_CHARS
from protocol import (
    Blob,
    Content,
    FunctionCall,
    ModelText,
    Outbound,
    Part,
    ServerContent,
    ServerMessage,
    ToolCall,
    Transcription,
)

LOG = logging.LoggerAdapter(logging.getLogger("test.outbox"), {})
TURN_COMPLETE = ServerMessage(server_content=ServerContent(turn_complete=True))


def ignore_sent(_: Outbound) -> None:
    return None


class Recorder:
    def __init__(self) -> None:
        self.frames: list[dict[str, object]] = []
        self.writes: list[int] = []  # frames per write
        self.closed: tuple[int, str] | None = None
        self.sent = asyncio.Event()

    async def recv(self) -> str | bytes:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        await self.send_all([data])

    async def send_all(self, frames: list[bytes]) -> None:
        self.frames += [json.loads(data) for data in frames]
        self.writes.append(len(frames))
        self.sent.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def texts(frames: list[dict[str, object]]) -> list[str | None]:
    out = []
    for frame in frames:
        content = frame["serverContent"]
        assert isinstance(content, dict)
        turn = content.get("modelTurn")
        out.append(turn["parts"][0]["text"] if turn else None)
    return out


async def test_deltas_queued_behind_the_writer_go_out_as_one_message_in_order() -> None:
    queue = Outbox()
    transport = Recorder()
    for word in ["The ", "sum ", "is ", "129."]:
        queue.put_nowait(ModelText(word))
    queue.put_nowait(TURN_COMPLETE)
    queue.put_nowait(ModelText("next "))
    queue.put_nowait(ModelText("turn"))
    queue.put_nowait(Close(1000, "bye"))
    await asyncio.wait_for(write(queue, transport, LOG, ignore_sent), 5)
    assert texts(transport.frames) == ["The sum is 129.", None, "next turn"]
    assert transport.frames[1] == {"serverContent": {"turnComplete": True}}
    assert transport.writes == [3]  # queued together: one write
    assert transport.closed == (1000, "bye")


async def test_an_idle_writer_sends_each_delta_at_once() -> None:
    queue = Outbox()
    transport = Recorder()
    writer = asyncio.create_task(write(queue, transport, LOG, ignore_sent))
    for word in ["one ", "two ", "three"]:
        transport.sent.clear()
        queue.put_nowait(ModelText(word))
        await asyncio.wait_for(transport.sent.wait(), 5)  # sent before the next delta exists
    queue.put_nowait(Close(1000, ""))
    await asyncio.wait_for(writer, 5)
    assert texts(transport.frames) == ["one ", "two ", "three"]
    assert transport.writes == [1, 1, 1]


async def test_merged_deltas_stay_under_the_message_limit() -> None:
    queue = Outbox()
    transport = Recorder()
    piece = "x" * (MAX_TEXT_CHARS // 2)
    for _ in range(5):
        queue.put_nowait(ModelText(piece))
    queue.put_nowait(Close(1000, ""))
    await asyncio.wait_for(write(queue, transport, LOG, ignore_sent), 5)
    assert [len(t or "") for t in texts(transport.frames)] == [MAX_TEXT_CHARS, MAX_TEXT_CHARS, len(piece)]


async def test_barge_in_drops_the_unsent_speech_and_keeps_everything_else() -> None:
    """What the writer has not yet sent of the model's speech is dropped on interruption; text, code,
    calls and turn signals queued with it still go out, in order."""
    def audio(n: int) -> ServerMessage:
        part = Part(inline_data=Blob(mime_type="audio/pcm;rate=24000", data=bytes([n]) * 4))
        return ServerMessage(server_content=ServerContent(model_turn=Content(role="model", parts=[part])))

    said = ServerMessage(server_content=ServerContent(output_transcription=Transcription(text="The sum")))
    code = ServerMessage(
        server_content=ServerContent(
            model_turn=Content(role="model", parts=[Part(text="Running code.")])
        )
    )
    call = ServerMessage(tool_call=ToolCall(function_calls=[FunctionCall(id="c1", name="f", args={})]))
    queue = Outbox()
    for item in (said, audio(1), code, audio(2), call, audio(3), TURN_COMPLETE):
        queue.put_nowait(item)
    assert queue.drop_unsent_speech() == 4
    queue.put_nowait(Close(1000, ""))
    transport = Recorder()
    await asyncio.wait_for(write(queue, transport, LOG, ignore_sent), 5)
    assert [list(frame) for frame in transport.frames] == [["serverContent"], ["toolCall"], ["serverContent"]]
    assert texts([transport.frames[0], transport.frames[2]]) == ["Running code.", None]
