"""The docker token spec's scopes (``repository:<name>:pull,push``), parsed without
trusting them: each space-separated scope stands alone, so a scope string cannot
smuggle a second repository or action into the first."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.auth.permissions import Action

# The distribution spec's name: path components of lowercase alphanumerics joined by
# separators; 255 characters at most, as distribution caps it.
_NAME = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
OCI_ACTIONS: dict[str, frozenset[Action]] = {
    "pull": frozenset({"read"}),
    "push": frozenset({"write"}),
    "delete": frozenset({"delete"}),
    "*": frozenset({"read", "write", "delete"}),
}
# What each of our actions is called in a token's access claim.
AS_OCI: dict[Action, str] = {"read": "pull", "write": "push", "delete": "delete", "admin": "*"}


@dataclass(frozen=True, slots=True)
class Scope:
    name: str  # repository/image
    actions: tuple[str, ...]  # as asked: pull, push, delete, *


def parse_scopes(values: list[str]) -> list[Scope]:
    """Every ``repository:`` scope in ``values``; anything else (``registry:catalog:*``,
    a malformed name or action) is left out, as a grant of nothing."""
    found = []
    for value in values:
        for part in value.split(" "):
            kind, _, rest = part.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or len(name) > 255 or not _NAME.match(name):
                continue
            asked = tuple(a for a in dict.fromkeys(actions.split(",")) if a in OCI_ACTIONS)
            if asked:
                found.append(Scope(name, asked))
    return found
