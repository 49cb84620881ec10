"""The web console in real headless Chromium against a real openlive server.

Screenshots go to `test-artifacts/` (override with OPENLIVE_ARTIFACTS) so a person can look at the page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import re
import shutil
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from protocol import (
    Blob,
    Content,
    Part,
    ServerContent,
    ServerMessage,
    SetupComplete,
    Transcription,
    dump_server_message,
    parse_client_message,
)
from tests.conftest import API_KEY, REPO, Server, start_demo_server
from tests.speech import silence, speak, write_wav

CHROMIUM = os.environ.get("OPENLIVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("OPENLIVE_ARTIFACTS", REPO / "test-artifacts"))
PRIME_PROMPT = "What is the sum of the first 50 prime numbers? Generate and run code for the calculation."
TIMEOUT_MS = 30_000

# Renders a 24 kHz PCM16 tone as a WAV file the sandbox returns as inline audio: the real server has no
# speech output yet, but a file the code writes travels back as an inlineData part like any audio would.
AUDIO_RULE = {
    "match": "(?i)say it out loud",
    "reply": [
        {"text": "Here it is as audio."},
        {
            "code": (
                "import math, struct, wave\n"
                "rate = 24000\n"
                "frames = b''.join(struct.pack('<h', int(8000 * math.sin(2 * math.pi * 440 * i / rate)))"
                " for i in range(rate // 2))\n"
                "with wave.open('reply.wav', 'wb') as w:\n"
                "    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate); w.writeframes(frames)\n"
                "print(len(frames) // 2, 'samples')\n"
            )
        },
        {"text": "Done."},
    ],
}

SPOKEN_QUESTION = "what is the sum of the first fifty prime numbers"
# The page captures Chromium's fake microphone in real time and resamples it in the browser, so the audio
# differs from run to run and pocketsphinx may drop a short word ("the"): match the words that carry it.
HEARD = r"sum of (the )?first fifty"
SPOKEN_RULE = {"match": f"(?i){HEARD}", "reply": [{"text": "The sum is 5117."}]}

expect.set_options(timeout=TIMEOUT_MS)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (.ci/setup.sh)"
)


@pytest.fixture(scope="module")
def console_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The bundled demo script plus one rule whose code returns a WAV file."""
    srv = start_demo_server(certs, tmp_path_factory.mktemp("console"), AUDIO_RULE, SPOKEN_RULE)
    yield srv
    srv.stop()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@contextlib.contextmanager
def chromium(pw: Playwright, *extra_args: str) -> Iterator[Browser]:
    # Playwright's launch() gives the browser a fresh temporary user-data-dir of its own.
    launched = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    with chromium(playwright) as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def open_console(page: Page, url: str, server: str | None = None) -> None:
    page.goto(url)
    if server is not None:
        page.fill("#server", server)
    page.fill("#key", API_KEY)
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "ready")


def ask(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def last_turn(page: Page) -> Any:
    turn = page.locator(".turn.model").last
    expect(turn.locator(".turn-meta")).to_be_visible()
    return turn


def test_prime_sum_shows_code_result_and_text(page: Page, console_server: Server) -> None:
    open_console(page, console_server.url)
    ask(page, PRIME_PROMPT)
    turn = last_turn(page)
    expect(turn.locator(".part.code code")).to_contain_text("def is_prime")
    expect(turn.locator(".part.code .tok-keyword").first).to_be_visible()
    result = turn.locator(".part.result")
    expect(result).to_have_attribute("data-outcome", "OUTCOME_OK")
    expect(result.locator(".output")).to_have_text("5117")
    expect(turn.locator(".part.text").last).to_contain_text("The sum of the first 50 prime numbers is 5117.")
    # The raw frame panel shows the frames both ways.
    expect(page.locator(".frame.out").first).to_contain_text("setup")
    expect(page.locator(".frame.in", has_text="codeExecutionResult")).to_have_count(1)
    screenshot(page, "console-prime-sum")


def test_plot_renders_png_image(page: Page, console_server: Server) -> None:
    open_console(page, console_server.url)
    ask(page, "Plot sin and cos")
    turn = last_turn(page)
    image = turn.locator("img.inline-image")
    expect(image).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    src = image.get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,")
    png = base64.b64decode(src.split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [width, height] and width > 100 and height > 100
    screenshot(page, "console-plot")


def test_audio_reply_is_queued_for_playback(page: Page, console_server: Server) -> None:
    open_console(page, console_server.url)
    ask(page, "Say it out loud")
    turn = last_turn(page)
    expect(turn.locator(".part.audio")).to_contain_text("0.5 s of audio")
    stats = page.evaluate("() => window.openlive.audio")
    assert stats["chunks"] == 1
    assert stats["samples"] == 12000
    assert stats["sampleRates"] == [24000]


class AudioPeer:
    """A Live peer that answers every turn with `audio/pcm;rate=24000` chunks and an output transcript.

    openlive has no speech output yet; this speaks the same wire protocol (messages built with `protocol`)
    so the page's PCM playback path is exercised by real frames from a real socket.
    """

    CHUNKS = 3
    SAMPLES = 2400  # 100 ms at 24 kHz per chunk

    def __init__(self, certs: Path) -> None:
        self.port = 0
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(certs / "server.pem", certs / "server.key")
        self.received: list[str] = []
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> AudioPeer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with websockets.serve(self._handle, "127.0.0.1", 0, ssl=self._tls) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    async def _handle(self, ws: Any) -> None:
        tone = b"".join(
            struct.pack("<h", int(6000 * math.sin(2 * math.pi * 330 * i / 24000)))
            for i in range(self.SAMPLES)
        )
        async for raw in ws:
            msg = parse_client_message(raw)
            self.received.append(msg.kind)
            if msg.setup is not None:
                await ws.send(dump_server_message(ServerMessage(setup_complete=SetupComplete())))
            elif msg.client_content is not None and msg.client_content.turn_complete:
                for _ in range(self.CHUNKS):
                    part = Part(inline_data=Blob(mime_type="audio/pcm;rate=24000", data=tone))
                    content = ServerContent(model_turn=Content(role="model", parts=[part]))
                    await ws.send(dump_server_message(ServerMessage(server_content=content)))
                said = ServerContent(output_transcription=Transcription(text="Hello there."))
                await ws.send(dump_server_message(ServerMessage(server_content=said)))
                await ws.send(
                    dump_server_message(ServerMessage(server_content=ServerContent(turn_complete=True)))
                )


def test_pcm_audio_chunks_play_back_to_back(page: Page, console_server: Server, certs: Path) -> None:
    with AudioPeer(certs) as peer:
        open_console(page, console_server.url, server=f"wss://127.0.0.1:{peer.port}")
        ask(page, "Hello")
        turn = last_turn(page)
        expect(turn.locator(".part.transcript.output")).to_contain_text("Hello there.")
        expect(turn.locator(".part.audio")).to_contain_text("3 chunks")
        stats = page.evaluate("() => window.openlive.audio")
        assert stats["chunks"] == AudioPeer.CHUNKS
        assert stats["samples"] == AudioPeer.CHUNKS * AudioPeer.SAMPLES
        assert stats["sampleRates"] == [24000]
        assert peer.received == ["setup", "client_content"]
        screenshot(page, "console-audio")


def test_microphone_streams_16khz_pcm(page: Page, console_server: Server) -> None:
    open_console(page, console_server.url)
    page.click("#mic")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "true")
    audio_frames = page.locator(".frame.out", has_text="realtimeInput audio")
    expect(audio_frames.nth(4)).to_be_attached()
    sent = page.evaluate(
        """() => window.openlive.state.frames
            .filter(f => f.direction === 'out' && f.message.realtimeInput?.audio)
            .slice(0, 5).map(f => f.message.realtimeInput.audio)"""
    )
    assert {a["mimeType"] for a in sent} == {"audio/pcm;rate=16000"}
    assert all(len(base64.b64decode(a["data"])) == 1280 for a in sent)  # 40 ms of 16 kHz PCM16
    page.click("#mic")
    expect(page.locator(".frame.out", has_text="realtimeInput audioStreamEnd")).to_have_count(1)
    expect(page.locator("#status")).to_have_attribute("data-state", "ready")  # the server took it all


@pytest.fixture(scope="module")
def talking_browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Chromium whose fake microphone says the question once (espeak-ng), then stays silent."""
    wav = write_wav(
        tmp_path_factory.mktemp("mic") / "question.wav", silence(0.5) + speak(SPOKEN_QUESTION) + silence(6)
    )
    with chromium(playwright, f"--use-file-for-fake-audio-capture={wav}%noloop") as launched:
        yield launched


def test_talk_mode_speaks_with_the_real_server(talking_browser: Browser, console_server: Server) -> None:
    context = talking_browser.new_context(ignore_https_errors=True, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(console_server.url)
    page.check("input[name=modality][value=AUDIO]")
    page.fill("#system", f"Answer questions such as: {SPOKEN_QUESTION}.")  # the recogniser's vocabulary
    page.fill("#key", API_KEY)
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "ready")
    page.click("#mic")
    expect(page.locator(".part.transcript.input").first).to_contain_text(re.compile(HEARD))
    turn = last_turn(page)
    expect(turn.locator(".part.transcript.output")).to_contain_text("The sum is 5117.")
    stats = page.evaluate("() => window.openlive.audio")
    assert stats["chunks"] > 0 and stats["sampleRates"] == [24000]
    assert 1.0 < stats["seconds"] < 6.0  # "The sum is 5117." spoken, queued on the page's AudioContext
    screenshot(page, "console-talk")
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
