"""Voice through OpenAI-compatible speech upstreams (`--stt-url`, `--tts-url`): a real speech server
(tests/speech_upstream.py: pocketsphinx and espeak-ng behind the OpenAI audio API) in its own process,
driven end to end through the google-genai SDK; an upstream that fails closes the session with a clear
reason and the server goes on serving."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Server, start_demo_server
from tests.llama_upstream import free_port
from tests.speech import silence, speak
from tests.speech_upstream import SpeechUpstream, start_speech_upstream
from tests.test_live_errors import closed_with
from tests.test_voice_live import (
    QUESTION,
    RULES,
    Heard,
    ask_the_spoken_question,
    audio_config,
    listen,
    transcribe_reply,
)

HELLO = {"match": "(?i)hello", "reply": [{"text": "Hello there."}]}
BROKEN_VOICE = "Kore"  # mapped to an upstream voice that cannot speak: the upstream answers 500


@dataclass
class Speaking:
    server: Server
    upstream: SpeechUpstream
    log: Path


@pytest.fixture(scope="module")
def speaking(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Speaking]:
    directory = tmp_path_factory.mktemp("speech-upstream")
    log = directory / "upstream.log"
    upstream = start_speech_upstream(free_port(), log)
    config = directory / "openlive.toml"
    config.write_text(f'tts_voice = "echo"\n[tts_voices]\n{BROKEN_VOICE} = "zz-no-such-voice"\n')
    url = upstream.base_url
    args = ("--stt-url", url, "--tts-url", url, "--tts-model", "tts-1", "--config", str(config))
    server = start_demo_server(certs, directory, HELLO, *RULES, args=args)
    state = Speaking(server, upstream, log)
    yield state
    server.stop()
    state.upstream.stop()


async def test_spoken_question_through_speech_upstreams(speaking: Speaking) -> None:
    heard = await ask_the_spoken_question(speaking.server, 90)  # the transcript is the upstream's reading
    pcm = heard.audio()
    assert 2 < len(pcm) / 48000 < 10  # 24 kHz PCM16 from the upstream's `pcm` format
    reply = await asyncio.to_thread(transcribe_reply, pcm, "the sum is five thousand one hundred seventeen")
    assert "five thousand one hundred" in reply and "seventeen" in reply


def _setup(voice: str) -> str:
    speech = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}
    setup = {"model": "models/gemini-live-2.5-flash-preview", "generationConfig": {"speechConfig": speech}}
    return json.dumps({"setup": setup})


def _text(text: str) -> str:
    turn = {"role": "user", "parts": [{"text": text}]}
    return json.dumps({"clientContent": {"turns": [turn], "turnComplete": True}})


def _audio(pcm: bytes) -> list[str]:
    step = 16000 * 2 // 10  # 100 ms frames

    def frame(chunk: bytes) -> str:
        blob = {"data": base64.b64encode(chunk).decode(), "mimeType": "audio/pcm;rate=16000"}
        return json.dumps({"realtimeInput": {"audio": blob}})

    return [frame(pcm[i : i + step]) for i in range(0, len(pcm), step)]


async def test_failing_speech_upstreams_close_with_a_reason(speaking: Speaking) -> None:
    # The speech upstream answers 500: the spoken turn ends the session with the upstream's status.
    code, reason, _ = await closed_with(speaking.server, [_setup(BROKEN_VOICE), _text("hello")])
    assert (code, reason) == (1011, "the speech synthesis upstream failed (500)")
    # The upstream is down (connection refused): the utterance cannot be read.
    speaking.upstream.stop()
    speech = _audio(silence(0.3) + speak(QUESTION) + silence(1.0))
    code, reason, _ = await closed_with(speaking.server, [_setup("Puck"), *speech])
    assert (code, reason) == (1011, "the speech recognition upstream is unreachable")
    # The server kept serving: with the upstream back, a spoken turn completes.
    speaking.upstream = start_speech_upstream(speaking.upstream.port, speaking.log)
    async with speaking.server.client().aio.live.connect(model="gemini-live-2.5-flash-preview",
                                                          config=audio_config()) as session:  # fmt: skip
        heard = Heard()
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "hello"}]})
        await asyncio.wait_for(listen(session, heard), 60)
    assert "".join(heard.of("output")) == "Hello there."
    assert len(heard.audio()) > 24000  # over half a second of speech
