"""Configurations for the two deployment shapes, pointed at test services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Config, parse_config
from tests.services import S3Settings

FILES_REPO = {"name": "files", "format": "generic", "kind": "local"}
# Tests share one source address and (scale-out) one Redis: failed logins are counted
# only where a test sets the limits itself (test_auth.py's flood).
UNTHROTTLED = {"failed_logins_per_source": 10**9, "failed_logins_per_user": 10**9}


def embedded(root: Path, repositories: list[dict[str, Any]] | None = None, **extra: Any) -> Config:
    extra["auth"] = {
        "initial_admin_password_file": str(root / "initial-admin-password"),
        **UNTHROTTLED,
    } | (extra.get("auth") or {})
    return parse_config(
        {
            "database": {"url": f"sqlite:///{root / 'meta.db'}"},
            "storage": {"driver": "filesystem", "root": str(root / "blobs")},
            "cache": {"url": "memory://"},
            "repositories": repositories if repositories is not None else [FILES_REPO],
            **extra,
        },
        env={},
    )


def s3_storage(s3: S3Settings, prefix: str, **overrides: Any) -> dict[str, Any]:
    """The ``storage`` section for the test S3 server, under a prefix of the test's own."""
    return {
        "driver": "s3",
        "endpoint": s3.endpoint,
        "bucket": s3.bucket,
        "access_key": s3.access_key,
        "secret_key": s3.secret_key,
        "prefix": prefix,
        "part_size": "5MiB",
        **overrides,
    }


def scale_out(
    postgres_dsn: str,
    redis_url: str,
    s3: S3Settings,
    prefix: str,
    repositories: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Config:
    extra["auth"] = {"initial_admin_password_file": "", **UNTHROTTLED} | (extra.get("auth") or {})
    return parse_config(
        {
            "database": {"url": postgres_dsn},
            "storage": s3_storage(s3, prefix),
            "cache": {"url": redis_url},
            "repositories": repositories if repositories is not None else [FILES_REPO],
            **extra,
        },
        env={},
    )
