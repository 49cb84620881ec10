"""Which backend serves the `model` a client names in `setup`."""

from __future__ import annotations

from live.backends.base import ModelBackend
from live.backends.errors import BackendError


def model_id(name: str) -> str:
    """`models/gemini-x` and `gemini-x` name the same model."""
    return name.removeprefix("models/")


class Backends:
    """Routes by exact model name; a catch-all backend (the scripted model) serves any other name."""

    def __init__(self, backends: list[ModelBackend], catch_all: ModelBackend | None = None) -> None:
        self._by_name = {name: b for b in backends for name in b.models()}
        self._all = list(dict.fromkeys([*backends, *([catch_all] if catch_all else [])]))
        self._catch_all = catch_all

    def names(self) -> list[str]:
        return list(self._by_name)

    def resolve(self, model: str, api_version: str = "v1beta") -> ModelBackend:
        backend = self._by_name.get(model_id(model)) or self._catch_all
        if backend is None:
            raise BackendError(
                1008,
                f"models/{model_id(model)} is not found for API version {api_version}, or is not "
                "supported for bidiGenerateContent. Call ListModels to see the list of available models",
            )
        return backend

    async def close(self) -> None:
        for backend in self._all:
            await backend.close()
