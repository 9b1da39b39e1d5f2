"""A repository's options, typed as its format validated them."""

from __future__ import annotations

import pytest

from app.formats.generic.local import LocalOptions
from app.formats.generic.remote import RemoteGenericOptions
from app.repositories import Repository


def test_narrowed_types_the_options_and_refuses_another_formats() -> None:
    repo: Repository = Repository(7, "files", "generic", "local", LocalOptions(overwrite=False))
    local = repo.narrowed(LocalOptions)
    assert local == repo and local.options.overwrite is False
    with pytest.raises(TypeError, match="files has LocalOptions options, not RemoteGenericOptions"):
        repo.narrowed(RemoteGenericOptions)
