"""The answer of ``GET /api/v1/repositories/<virtual>/explain?name=…``: which member
serves a name, and why each other one does not."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.proxy.cooldown import Patterns
from app.virtual.asking import Answer, Virtual


def explained(
    virtual: Virtual,
    name: str,
    version: str | None,
    answers: Sequence[Answer[Any]],
    served_by: str | None,
    details: Callable[[Answer[Any]], dict[str, Any]] = lambda answer: {},
) -> dict[str, Any]:
    """The explanation's JSON: ``served_by`` is the member whose answer a client gets
    (None: nobody serves it); ``details`` adds what a format knows of each answer (the
    versions or files it has)."""
    key = virtual.normalise(name)
    options = virtual.repo.options
    return {
        "repository": virtual.repo.name,
        "format": virtual.repo.format,
        "name": name,
        "normalized": key,
        "version": version,
        "served_by": served_by,
        "guard": {
            "enabled": options.guard,
            "reserved_by": Patterns.of(options.reserved, virtual.normalise).match(key),
            "allowed_by": Patterns.of(options.allow, virtual.normalise).match(key),
        },
        "min_release_age": options.min_release_age,
        "members": [
            {
                "name": answer.name,
                "kind": answer.member.repo.kind,
                "via": [inner.name for inner in answer.member.via],
                "status": answer.status,
                "reason": answer.reason,
                "stale": answer.stale,
                **details(answer),
            }
            for answer in answers
        ],
    }
