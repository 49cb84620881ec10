"""The speech engines and the voice pipeline on real audio (espeak-ng speech), without a server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from live.voice import (
    OUTPUT_MIME,
    EspeakSynthesizer,
    InputConfig,
    PlaybackClock,
    PocketsphinxTranscriber,
    SileroPool,
    SpeechTurn,
    VoiceEngines,
    VoiceInput,
    truncate_unheard,
)
from live.voice.activity import Activity, ActivityParams, ActivityTracker
from live.voice.pcm import Resampler, input_rate, pcm16
from live.voice.sentences import SentenceSplitter
from protocol import (
    AutomaticActivityDetection,
    Content,
    ModelText,
    Part,
    ProtocolError,
    RealtimeInputConfig,
    ServerContent,
    ServerMessage,
)
from tests.speech import chunks, silence, speak

QUESTION = "what is the sum of the first fifty prime numbers"
VOCABULARY = [QUESTION, "plot sin and cos", "what is the weather in london"]


@pytest.fixture(scope="module")
async def engines() -> AsyncIterator[VoiceEngines]:
    engines = VoiceEngines(vad=SileroPool(), stt=PocketsphinxTranscriber(workers=2), tts=EspeakSynthesizer())
    yield engines
    await engines.close()


async def _stream(pcm: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks(pcm):
        yield chunk


# --- PCM -------------------------------------------------------------------------------------------


def test_mime_types_name_the_rate() -> None:
    assert input_rate("audio/pcm") == 16000
    assert input_rate("audio/pcm;rate=8000") == 8000
    assert input_rate("audio/pcm; rate=48000") == 48000
    for bad in ("audio/wav", "image/jpeg", "audio/pcm;rate=abc", "audio/pcm;rate=100", None):
        with pytest.raises(ProtocolError) as info:
            input_rate(bad)
        assert info.value.code == 1007
    with pytest.raises(ProtocolError, match="odd byte count"):
        pcm16(b"\x00\x01\x02")


@pytest.mark.parametrize("rate", [8000, 48000])
def test_resampling_keeps_duration_in_chunks(rate: int) -> None:
    pcm = pcm16(speak("one two three", rate))
    resampler = Resampler(rate, 16000)
    out = [resampler.push(c) for c in np.array_split(pcm, 37)]
    out.append(resampler.push(np.zeros(0, np.int16), last=True))
    total = sum(len(o) for o in out)
    assert abs(total - len(pcm) * 16000 / rate) <= 2
    assert all(o.dtype == np.int16 for o in out)


# --- TTS -------------------------------------------------------------------------------------------


async def test_espeak_speaks_24khz_pcm_for_each_gemini_voice(engines: VoiceEngines) -> None:
    tts = engines.tts
    kore, puck = tts.voice("Kore", "en-US"), tts.voice(None, None)
    assert kore.name.endswith("+f1") and puck.name.endswith("+m1")
    pcm = b"".join([c async for c in tts.synthesize("The sum is 5117.", kore)])
    seconds = len(pcm) / 2 / 24000
    assert 1.0 < seconds < 5.0
    assert np.abs(np.frombuffer(pcm, "<i2")).max() > 3000  # speech, not silence
    for name, language in (("Nobody", "en-US"), ("Kore", "xx-YY")):
        with pytest.raises(ProtocolError) as info:
            tts.voice(name, language)
        assert info.value.code == 1007


# --- STT -------------------------------------------------------------------------------------------


async def test_vocabulary_makes_pocketsphinx_hear_the_question(engines: VoiceEngines) -> None:
    speech = speak(QUESTION)
    plain = await engines.stt.transcribe(_stream(speech), [])
    biased = await engines.stt.transcribe(_stream(speech), VOCABULARY)
    assert biased.startswith("what is the sum of the first fifty")
    assert plain != biased  # the general model alone mishears synthetic speech


async def test_vocabulary_does_not_force_unrelated_speech(engines: VoiceEngines) -> None:
    text = await engines.stt.transcribe(_stream(speak("hello there how are you")), VOCABULARY)
    assert "sum" not in text and "plot" not in text and "weather" not in text


async def test_resampled_48khz_speech_is_still_understood(engines: VoiceEngines) -> None:
    # (8 kHz telephone audio resamples as well, but pocketsphinx's wideband model mishears it.)
    pcm = pcm16(speak(QUESTION, 48000))
    resampler = Resampler(48000, 16000)
    at_16k = b"".join(resampler.push(c).tobytes() for c in np.array_split(pcm, 50))
    text = await engines.stt.transcribe(_stream(at_16k), VOCABULARY)
    assert text.startswith("what is the sum of the first fifty")


# --- Activity ---------------------------------------------------------------------------------------


def test_tracker_needs_padding_to_start_and_silence_to_end() -> None:
    params = ActivityParams.from_setup(
        AutomaticActivityDetection(prefix_padding_ms=96, silence_duration_ms=320)
    )
    tracker = ActivityTracker(params, frame_ms=32)
    assert [tracker.push(p) for p in (0.9, 0.9, 0.1)] == [None, None, None]  # 64 ms: not yet
    assert [tracker.push(p) for p in (0.9, 0.9, 0.9)] == [None, None, Activity.START]
    events = [tracker.push(p) for p in [0.1] * 9 + [0.9] + [0.1] * 10]
    assert events.count(Activity.END) == 1 and events.index(Activity.END) == 19  # the blip resets it


def test_sensitivity_sets_thresholds_and_defaults() -> None:
    high = ActivityParams.from_setup(None)
    low = ActivityParams.from_setup(
        AutomaticActivityDetection(
            start_of_speech_sensitivity="START_SENSITIVITY_LOW",
            end_of_speech_sensitivity="END_SENSITIVITY_LOW",
        )
    )
    assert low.start_threshold > high.start_threshold and low.start_ms > high.start_ms
    assert low.end_threshold < high.end_threshold and low.silence_ms > high.silence_ms
    tracker = ActivityTracker(low, frame_ms=32)
    assert all(tracker.push(0.7) is None for _ in range(20))  # speech-ish, but not for a LOW start
    with pytest.raises(ProtocolError):
        ActivityParams.from_setup(AutomaticActivityDetection(start_of_speech_sensitivity="LOUD"))


class Recorder:
    """Implements the session's side of VoiceHooks by writing down what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, str]] = []
        self.texts: asyncio.Queue[str] = asyncio.Queue()

    async def speech_started(self) -> None:
        self.events.append(("start", time.monotonic(), ""))

    async def transcribed(self, text: str) -> None:
        self.events.append(("text", time.monotonic(), text))
        self.texts.put_nowait(text)


async def _run_input(engines: VoiceEngines, config: InputConfig, feed: list[bytes], mime: str) -> Recorder:
    hooks = Recorder()
    voice = VoiceInput(engines, config, hooks, lambda: VOCABULARY)
    async with asyncio.TaskGroup() as tg:
        worker = tg.create_task(voice.run())
        for chunk in feed:
            await voice.audio(mime, chunk)
        voice.stream_end()
        await asyncio.wait_for(hooks.texts.get(), 30)
        worker.cancel()
    return hooks


async def test_automatic_detection_turns_speech_into_one_utterance(engines: VoiceEngines) -> None:
    pcm = silence(0.5) + speak(QUESTION) + silence(1.0)
    hooks = await _run_input(engines, InputConfig.from_setup(None), chunks(pcm), "audio/pcm;rate=16000")
    kinds = [k for k, _, _ in hooks.events]
    assert kinds == ["start", "text"]
    assert hooks.events[1][2].startswith("what is the sum of the first fifty")


async def test_manual_activity_marks_the_utterance(engines: VoiceEngines) -> None:
    config = InputConfig.from_setup(
        RealtimeInputConfig.model_validate({"automaticActivityDetection": {"disabled": True}})
    )
    hooks = Recorder()
    voice = VoiceInput(engines, config, hooks, lambda: VOCABULARY)
    async with asyncio.TaskGroup() as tg:
        worker = tg.create_task(voice.run())
        for chunk in chunks(speak("plot sin and cos")):  # before activityStart: not part of the turn
            await voice.audio("audio/pcm", chunk)
        voice.start()
        for chunk in chunks(speak(QUESTION, 48000), 48000):
            await voice.audio("audio/pcm;rate=48000", chunk)
        voice.end()
        text = await asyncio.wait_for(hooks.texts.get(), 30)
        worker.cancel()
    assert text.startswith("what is the sum of the first fifty")
    assert [k for k, _, _ in hooks.events] == ["text"]  # no automatic detection in manual mode


# --- Output ----------------------------------------------------------------------------------------


def test_sentences_split_early_and_drop_markup() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Adding up the first ") == []
    (first,) = splitter.push("50 primes. The sum")
    assert first.text == "Adding up the first 50 primes." and first.raw_chars == 30
    (second,) = splitter.push(" is **5117**. ")
    assert second.text == "The sum is 5117."
    assert [s.text for s in splitter.flush()] == [""]


async def test_speech_turn_paces_turn_complete_and_truncates_to_what_was_heard(engines: VoiceEngines) -> None:
    sent: list[tuple[float, ServerMessage]] = []

    async def send(message: ServerMessage) -> None:
        sent.append((time.monotonic(), message))
        speech.written(message)  # a writer that keeps up

    voice = engines.tts.voice("Puck", "en-US")
    speech = SpeechTurn(engines.tts, voice, send, transcribe=True)
    said = "The first sentence is short. The second sentence is a little longer than the first one."

    async def model_turn() -> None:
        for word in said.split(" "):
            await speech.emit(ServerMessage(server_content=ServerContent(model_turn=Content(
                role="model", parts=[Part(text=word + " ")]))))  # fmt: skip
        await speech.emit(ServerMessage(server_content=ServerContent(generation_complete=True)))
        await speech.emit(ServerMessage(server_content=ServerContent(turn_complete=True)))

    started = time.monotonic()
    await speech.run(model_turn())
    audio = [(t, m) for t, m in sent if m.server_content and m.server_content.model_turn]
    parts = [m.server_content.model_turn.parts for _, m in audio]  # type: ignore[union-attr]
    assert all(len(p) == 1 and p[0].inline_data and p[0].inline_data.mime_type == OUTPUT_MIME for p in parts)
    seconds = sum(len(p[0].inline_data.data) for p in parts) / 48000  # type: ignore[union-attr]
    transcript = "".join(
        m.server_content.output_transcription.text  # type: ignore[union-attr]
        for _, m in sent
        if m.server_content and m.server_content.output_transcription
    )
    assert transcript == said.strip()
    kinds = [
        k for _, m in sent for k in ("generation_complete", "turn_complete") if getattr(m.server_content, k)
    ]
    assert kinds == ["generation_complete", "turn_complete"]
    generation_done = next(t for t, m in sent if m.server_content and m.server_content.generation_complete)
    turn_done = sent[-1][0]
    first_audio = audio[0][0]
    assert generation_done - started < seconds / 3  # made far faster than real time
    assert turn_done >= first_audio + seconds - 0.05  # held until playback would end
    assert turn_done < first_audio + seconds + 0.5

    # Half way through the audio, about half of the text has been heard; the history keeps only that.
    history = [Content(role="user", parts=[Part(text="hi")]), Content(role="model", parts=[Part(text=said)])]
    heard = speech.heard_chars()
    assert heard == len(said)
    truncate_unheard(history, 1, len(said) // 2)
    kept = history[1].parts[0].text or ""
    assert said.startswith(kept) and 0 < len(kept) <= len(said) // 2 and not kept.endswith(" ")
    truncate_unheard(history, 1, 0)
    assert len(history) == 1


async def test_playback_clock_starts_when_audio_is_written(engines: VoiceEngines) -> None:
    now = [0.0]
    clock = PlaybackClock(lambda: now[0])
    queued: list[ServerMessage] = []

    async def send(message: ServerMessage) -> None:
        queued.append(message)  # the writer is behind: nothing goes out yet

    said = "The first sentence is short. The second one is a little longer."
    speech = SpeechTurn(engines.tts, engines.tts.voice("Puck", "en-US"), send, transcribe=False, clock=clock)

    async def model_turn() -> None:
        await speech.emit(ModelText(said))

    await speech.run(model_turn())
    contents = [c for m in queued if m.server_content and (c := m.server_content.model_turn)]
    seconds = sum(len(p.inline_data.data or b"") for c in contents for p in c.parts if p.inline_data) / 48000
    assert seconds > 2
    now[0] += 60  # long after: still nothing was written, so nothing was heard
    assert speech.heard_chars() == 0
    for message in queued:
        speech.written(message)
    assert speech.heard_chars() == 0 and clock.remaining_s() == pytest.approx(seconds)  # it plays from now
    now[0] += seconds / 2
    assert 0 < speech.heard_chars() < len(said)
    now[0] += seconds / 2 + 0.01
    assert speech.heard_chars() == len(said)
