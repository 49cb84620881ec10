"""API keys, accepted in every place Google's clients put them."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

UNREGISTERED_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


def presented_credential(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The SDK sends `x-goog-api-key`, raw samples `?key=`, ephemeral tokens `Token` or `access_token`."""
    if key := headers.get("x-goog-api-key"):
        return key
    if key := query.get("key"):
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("token", "bearer") and token:
        return token.strip()
    return query.get("access_token") or None


def is_authorized(credential: str | None, api_keys: list[str]) -> bool:
    """No configured keys means an open server (local development)."""
    if not api_keys:
        return True
    if credential is None:
        return False
    return any(hmac.compare_digest(credential.encode(), k.encode()) for k in api_keys)
