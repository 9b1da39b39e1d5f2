"""The metadata contract on PostgreSQL, the scale-out shape's database."""

from __future__ import annotations

import pytest

from tests.contract.metadata_suite import MetadataContract


class TestPostgres(MetadataContract):
    holds_nul = False

    @pytest.fixture
    def db_url(self, postgres_dsn: str) -> str:
        return postgres_dsn
