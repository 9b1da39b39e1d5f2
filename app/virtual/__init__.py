"""Virtual repositories: one URL over an ordered list of members of one format.

The format-free part lives here (options, members checked and flattened, members
asked at once with the dependency-confusion guard and the cooldown, the explain
answer); each format's merge rules live in its own folder (``virtual.py``)."""

from app.virtual.asking import (
    LEFT_OUT,
    MEMBER_HEADERS,
    SKIPPED_HEADER,
    STALE_HEADER,
    Answer,
    Held,
    Status,
    Virtual,
    Virtuals,
    answer_headers,
    first_served,
    leave_the_others,
    member_headers,
)
from app.virtual.explain import explained
from app.virtual.members import Member, Members, check_members
from app.virtual.options import VirtualOptions

__all__ = [
    "LEFT_OUT",
    "MEMBER_HEADERS",
    "SKIPPED_HEADER",
    "STALE_HEADER",
    "Answer",
    "Held",
    "Member",
    "Members",
    "Status",
    "Virtual",
    "VirtualOptions",
    "Virtuals",
    "answer_headers",
    "check_members",
    "explained",
    "first_served",
    "leave_the_others",
    "member_headers",
]
