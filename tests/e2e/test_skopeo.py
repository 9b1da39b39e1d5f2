"""skopeo, a real client, through nginx round-robin over two replicas with no affinity."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness, oci_layout
from tests.e2e.harness import nginx_round_robin, replicas, require_tool, upstreams_used
from tests.services import S3Settings
from tests.shapes import s3_storage

NAME = "docker-local/e2e/app"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


def skopeo(policy: Path, *args: str, stdin: str | None = None) -> str:
    binary = require_tool("skopeo")
    result = subprocess.run(
        [binary, "--policy", str(policy), *args],
        capture_output=True, text=True, timeout=300, check=False, input=stdin,
        env={**os.environ, "REGISTRY_AUTH_FILE": str(policy.parent / "auth.json")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(policy: Path, *args: str) -> str:
    """What skopeo says when the registry refuses it (credentials of its auth file)."""
    result = subprocess.run(
        [harness.require_tool("skopeo"), "--policy", str(policy), *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "REGISTRY_AUTH_FILE": str(policy.parent / "auth.json")},
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    return result.stderr


def scale_out_config(
    postgres_dsn: str, redis_url: str, s3: S3Settings, prefix: str, password_file: Path
) -> dict[str, Any]:
    return {
        "database": {"url": postgres_dsn},
        "storage": s3_storage(s3, prefix),
        "cache": {"url": redis_url},
        "repositories": [{"name": "docker-local", "format": "oci", "kind": "local"}],
        "auth": {"initial_admin_password_file": str(password_file)},
    }


def test_skopeo_copy_in_and_out_through_a_round_robin_balancer(
    tmp_path: Path,
    policy: Path,
    postgres_dsn: str,
    redis_server: str,
    s3_server: S3Settings,
    s3_prefix: str,
) -> None:
    require_tool("skopeo")
    layout = oci_layout.build(tmp_path / "layout", "1.0", [3 * 1024 * 1024, 700_000, 12_345])
    config = scale_out_config(
        postgres_dsn, redis_server, s3_server, s3_prefix, tmp_path / "initial-admin-password"
    )
    with (
        replicas(tmp_path / "replicas", config) as urls,
        nginx_round_robin(tmp_path / "nginx", urls) as balancer,
    ):
        host = balancer.removeprefix("http://")
        image = f"docker://{host}/{NAME}"
        # The repository is private: nothing without logging in, and a wrong password
        # is refused at login (GET /v2/ answers the truth, so skopeo cannot be fooled).
        assert "unauthorized" in refused(policy, "inspect", "--tls-verify=false", f"{image}:1.0")
        refused(policy, "login", "--tls-verify=false", "-u", "admin", "-p", "wrong", host)
        password = (tmp_path / "initial-admin-password").read_text().strip()
        skopeo(policy, "login", "--tls-verify=false", "-u", "admin", "--password-stdin", host,
               stdin=password)  # fmt: skip
        # Each step's token comes from whichever replica nginx picked, and is used on
        # the other as often as not.
        skopeo(policy, "copy", "--dest-tls-verify=false", f"oci:{layout.path}:1.0", f"{image}:1.0")
        skopeo(
            policy,
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"{image}:1.0",
            f"{image}:latest",
        )

        # The push really was split: uploads reached both replicas.
        for method in ("POST", "PATCH", "PUT"):
            assert len(upstreams_used(tmp_path / "nginx", method)) == 2, method

        out = tmp_path / "out"
        skopeo(policy, "copy", "--src-tls-verify=false", f"{image}:1.0", f"oci:{out}:1.0")
        assert oci_layout.manifest_digest(out, "1.0") == layout.manifest_digest
        for digest in layout.blob_digests:
            assert oci_layout.blob(out, digest) == oci_layout.blob(layout.path, digest)

        tags = json.loads(skopeo(policy, "list-tags", "--tls-verify=false", image))
        assert sorted(tags["Tags"]) == ["1.0", "latest"]

        inspected = json.loads(skopeo(policy, "inspect", "--tls-verify=false", f"{image}:latest"))
        assert inspected["Digest"] == layout.manifest_digest

        skopeo(policy, "delete", "--tls-verify=false", f"{image}:1.0")
        # Deleting by tag resolves the tag to its manifest, which both tags shared.
        refused(policy, "inspect", "--tls-verify=false", f"{image}:latest")
