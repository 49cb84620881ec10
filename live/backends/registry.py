"""Which backend serves the `model` a client names in `setup` or in a REST path."""

from __future__ import annotations

import fnmatch

from live.backends.base import ModelBackend
from live.backends.errors import BackendError


def model_id(name: str) -> str:
    """`models/gemini-x` and `gemini-x` name the same model."""
    return name.removeprefix("models/")


class Backends:
    """Routes by exact model name, then by alias pattern (e.g. `gemini-*` to the default model), then to
    a catch-all backend (the scripted model serves any name); anything else is not found."""

    def __init__(
        self,
        backends: list[ModelBackend],
        aliases: dict[str, str] | None = None,
        catch_all: ModelBackend | None = None,
    ) -> None:
        self._by_name = {name: b for b in backends for name in b.models()}
        self._aliases = aliases or {}
        self._all = list(dict.fromkeys([*backends, *([catch_all] if catch_all else [])]))
        self._catch_all = catch_all

    def names(self) -> list[str]:
        return list(self._by_name)

    def tokens_sampled(self) -> dict[str, int]:
        """Live token counters of the backends that keep one (embedded models), by model name."""
        return {
            name: count
            for name, backend in self._by_name.items()
            if isinstance(count := getattr(backend, "tokens_generated", None), int)
        }

    def resolve(self, model: str, api_version: str = "v1beta") -> ModelBackend:
        name = model_id(model)
        backend = self._by_name.get(name)
        if backend is None:
            target = next(
                (t for pattern, t in self._aliases.items() if fnmatch.fnmatchcase(name, pattern)), None
            )
            backend = self._by_name.get(target) if target else None
        backend = backend or self._catch_all
        if backend is None:
            raise BackendError(
                1008,
                f"models/{name} is not found for API version {api_version}, or is not "
                "supported for bidiGenerateContent. Call ListModels to see the list of available models",
            )
        return backend

    async def close(self) -> None:
        for backend in self._all:
            await backend.close()
