"""skopeo, a real client, through nginx round-robin over two replicas with no affinity."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def skopeo(policy: Path, *args: str) -> str:
    binary = require_tool("skopeo")
    result = subprocess.run(
        [binary, "--policy", str(policy), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def scale_out_config(postgres_dsn: str, redis_url: str, s3: S3Settings, prefix: str) -> dict:  # type: ignore[type-arg]
    return {
        "database": {"url": postgres_dsn},
        "storage": s3_storage(s3, prefix),
        "cache": {"url": redis_url},
        "repositories": [{"name": "docker-local", "format": "oci", "kind": "local"}],
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
    config = scale_out_config(postgres_dsn, redis_server, s3_server, s3_prefix)
    with (
        replicas(tmp_path / "replicas", config) as urls,
        nginx_round_robin(tmp_path / "nginx", urls) as balancer,
    ):
        host = balancer.removeprefix("http://")
        image = f"docker://{host}/{NAME}"
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
        gone = subprocess.run(
            [harness.require_tool("skopeo"), "--policy", str(policy), "inspect",
             "--tls-verify=false", f"{image}:latest"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        # Deleting by tag resolves the tag to its manifest, which both tags shared.
        assert gone.returncode != 0
