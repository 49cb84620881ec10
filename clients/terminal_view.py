"""How `openlive chat` draws a turn: streamed text, boxed code and results, saved plots."""

from __future__ import annotations

import json
import os
import re
import wave
from pathlib import Path
from typing import Any, TextIO

from protocol import Blob

_RESET = "\033[0m"
_STYLES = {"dim": "2", "bold": "1", "cyan": "36", "green": "32", "red": "31", "yellow": "33", "blue": "34"}
_OUTCOME = {
    "OUTCOME_OK": ("ok", "green"),
    "OUTCOME_FAILED": ("failed", "red"),
    "OUTCOME_DEADLINE_EXCEEDED": ("deadline exceeded", "yellow"),
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class TerminalView:
    def __init__(self, out: TextIO, files_dir: Path, color: str = "auto") -> None:
        self.out = out
        self.files_dir = files_dir
        wants = color == "always" or (color == "auto" and out.isatty() and "NO_COLOR" not in os.environ)
        self.color = wants
        self.at_line_start = True
        self.saved = 0

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        return "".join(f"\033[{_STYLES[s]}m" for s in styles) + text + _RESET

    def write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def newline(self) -> None:
        if not self.at_line_start:
            self.write("\n")

    def banner(self, url: str, model: str, tools: list[str]) -> None:
        self.write(self.paint("openlive chat", "bold") + self.paint(f" · {model} · {url}", "dim") + "\n")
        self.write(
            self.paint(f"tools: {', '.join(tools) or 'none'} · Ctrl-C interrupts · /quit leaves", "dim")
            + "\n"
        )

    def prompt(self) -> None:
        self.newline()
        self.write(self.paint("you> ", "bold", "blue"))

    def text(self, text: str) -> None:
        self.write(text)

    def _box(self, title: str, body: str, style: str) -> None:
        self.newline()
        self.write(self.paint(f"╭─ {title}", style) + "\n")
        for line in body.rstrip("\n").split("\n"):
            self.write(self.paint("│ ", style) + line + "\n")
        self.write(self.paint("╰─", style) + "\n")

    def code(self, code: str, language: str) -> None:
        self._box(f"code · {language.lower()}", code, "cyan")

    def result(self, outcome: str, output: str) -> None:
        label, style = _OUTCOME.get(outcome, (outcome, "yellow"))
        self._box(f"result · {label}", output or "(no output)", style)

    def inline_data(self, blob: Blob) -> None:
        mime = (blob.mime_type or "application/octet-stream").lower()
        path = self._save(blob, mime)
        kind = "plot" if mime.startswith("image/") else "audio" if mime.startswith("audio/") else "file"
        self.newline()
        self.write(self.paint(f"[{kind} saved: {path}]", "green") + "\n")

    def _save(self, blob: Blob, mime: str) -> Path:
        """Images and files as they are; raw PCM audio wrapped in a WAV header so players open it."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.saved += 1
        stem = f"{os.getpid()}-{self.saved}"
        if blob.display_name:
            path = self.files_dir / f"{stem}-{_SAFE_NAME.sub('_', blob.display_name)}"
        elif mime.startswith("audio/pcm"):
            path = self.files_dir / f"audio-{stem}.wav"
            rate = int(m.group(1)) if (m := re.search(r"rate=(\d+)", mime)) else 24000
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(blob.data)
            return path.resolve()
        else:
            extension = {"image/png": ".png", "image/jpeg": ".jpg", "image/svg+xml": ".svg"}.get(mime, ".bin")
            path = self.files_dir / f"{'plot' if mime.startswith('image/') else 'file'}-{stem}{extension}"
        path.write_bytes(blob.data)
        return path.resolve()

    def transcript(self, who: str, text: str) -> None:
        self.newline()
        self.write(self.paint(f"[{who}: {text}]", "dim") + "\n")

    def tool_call(self, name: str, args: dict[str, Any], result: dict[str, Any]) -> None:
        self.newline()
        self.write(self.paint(f"→ {name}({json.dumps(args)})", "blue") + "\n")
        self.write(self.paint(f"← {json.dumps(result)}", "blue", "dim") + "\n")

    def note(self, text: str) -> None:
        self.newline()
        self.write(self.paint(f"[{text}]", "yellow") + "\n")

    def hint(self, text: str) -> None:
        self.newline()
        self.write(self.paint(f"{text}", "dim") + "\n")

    def error(self, text: str) -> None:
        self.newline()
        self.write(self.paint(f"error: {text}", "red") + "\n")

    def turn_complete(self, seconds: float, tokens: int | None) -> None:
        self.newline()
        usage = f", {tokens} tokens" if tokens is not None else ""
        self.write(self.paint(f"({seconds:.2f} s{usage})", "dim") + "\n")
