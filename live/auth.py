"""API keys, accepted in every place Google's clients put them."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from live.api_errors import ApiError
from live.store import digest

INVALID_API_KEY = "API key not valid. Please pass a valid API key."
INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential."
)
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


def rest_caller(headers: Mapping[str, str], query: Mapping[str, str], api_keys: list[str]) -> str:
    """Who is calling, as an opaque owner id for what they store; or Google's error for their credential.

    No credential is 403 (unregistered caller); a wrong API key 400 (API_KEY_INVALID); a wrong token in
    `Authorization` or `access_token` 401, as the Gemini API answers each.
    """
    credential = presented_credential(headers, query)
    if not is_authorized(credential, api_keys):
        if credential is None:
            raise ApiError(403, UNREGISTERED_CALLER)
        if headers.get("x-goog-api-key") or query.get("key"):
            raise ApiError(400, INVALID_API_KEY)
        raise ApiError(401, INVALID_CREDENTIALS)
    return digest(credential or "")  # the owner Live sessions have too (live/tokens.py)
