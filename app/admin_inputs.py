"""What the management API accepts, checked before use: JSON bodies with known fields
only, names, bounded text, flags, durations, times and ids; each refusal a 400
naming the field."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from aiohttp import web

from app.config import parse_seconds, principal_name
from app.errors import BadRequest

MAX_TEXT = 1024  # a description's or password's characters, at most


async def body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown fields: {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )
    return body


def name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what}: a name")
    try:
        return principal_name(value)
    except ValueError as exc:
        raise BadRequest(f"{what}: {exc}") from None


def text(body: dict[str, Any], key: str, default: str | None, blank: bool = True) -> str | None:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not blank and not value):
        raise BadRequest(f"{key}: a string of {0 if blank else 1} to {MAX_TEXT} characters")
    return value


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key}: true or false")
    return value


def duration(value: Any) -> float | None:
    """Seconds, or a duration as the configuration writes them (30d); None: never."""
    if value is None:
        return None
    try:
        seconds = parse_seconds(value) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not 0 < seconds < 100 * 365 * 86400:
        raise BadRequest("expires_in: seconds (or 12h, 30d), more than 0, under 100 years")
    return seconds


def since(value: str) -> float:
    """Seconds since the epoch, or an ISO 8601 time (with its zone)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("since: seconds since the epoch or an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise BadRequest("since: give the time's zone (2025-01-31T12:00:00Z)")
    return moment.timestamp()


def whole(value: str, what: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{what}: a whole number from {low} to {high}")
    return int(value)


def token_id(value: str) -> int:
    return whole(value, "token id", 1, 2**62)
