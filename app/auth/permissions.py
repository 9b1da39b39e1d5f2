"""What a grant allows: repository patterns by actions.

``read`` (pull, install, download), ``write`` (push, publish, upload, tag), ``delete``
and ``admin`` (manage the repository). Writing or deleting a package means reading
it too (a push asks which blobs exist; docker asks for ``pull,push``), and ``admin``
on a repository is every action on it. A pattern is a repository name, a glob
(``team-*``) or ``*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import get_args

from app.config import Action

__all__ = ["ACTIONS", "Action", "Grant", "allowed", "implied"]

ACTIONS: tuple[Action, ...] = get_args(Action)

_IMPLIED: dict[str, frozenset[Action]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "delete": frozenset({"read", "delete"}),
    "admin": frozenset(ACTIONS),
}


def implied(actions: Iterable[str]) -> frozenset[Action]:
    """``actions`` with what each implies."""
    return frozenset().union(*(_IMPLIED.get(a, frozenset()) for a in actions))


@dataclass(frozen=True, slots=True)
class Grant:
    repository: str  # a name, a glob or "*"
    actions: frozenset[Action]  # with what they imply

    @classmethod
    def of(cls, repository: str, actions: Iterable[str]) -> Grant:
        return cls(repository, implied(actions))

    def covers(self, repository: str, action: Action) -> bool:
        return action in self.actions and fnmatchcase(repository, self.repository)


def allowed(grants: Iterable[Grant], repository: str, action: Action) -> bool:
    return any(g.covers(repository, action) for g in grants)
