"""What a virtual repository's ``options`` say, whatever its format."""

from __future__ import annotations

from pydantic import Field

from app.config import Seconds
from app.proxy.cooldown import CooldownOptions, Globs


class VirtualOptions(CooldownOptions):
    """One URL over ``members`` in order (the first that has a file or version serves
    it); writes go to ``deploy_to``. A format with options of its own extends it."""

    members: tuple[str, ...] = Field(min_length=1, max_length=64)
    deploy_to: str | None = None  # a local member; without one, writes are refused
    # The dependency-confusion guard: a name a local member holds, or one ``reserved``
    # matches, is never asked of a remote member, unless ``allow`` matches it.
    guard: bool = True
    reserved: Globs = ()  # e.g. "@acme/*", "acme-*": protected before the first publish
    allow: Globs = ()  # names remote members may serve despite the guard
    member_timeout: Seconds = Field(default=10.0, gt=0)  # a slower member is left out
