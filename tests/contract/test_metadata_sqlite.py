"""The metadata contract on SQLite, the embedded shape's database."""

from __future__ import annotations

import pytest

from tests.contract.metadata_suite import MetadataContract


class TestSqlite(MetadataContract):
    holds_nul = True

    @pytest.fixture
    def db_url(self, sqlite_url: str) -> str:
        return sqlite_url
