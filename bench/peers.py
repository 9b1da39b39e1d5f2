"""The peers of the publishing benchmarks, installed from pins and started with a user each.

``python -m bench.peers`` installs them, and every benchmark that needs them calls
:func:`install` first, so ``make bench`` brings what it measures against:

* devpi-server and pypiserver (with passlib for its htpasswd file and watchdog for its
  cached directory backend, the setup its docs give for big directories) in their own
  virtualenv, ``.venv-bench`` at the top of the tree, from ``bench/peers/requirements.lock``
  (never the project's own venv: their pins are theirs);
* Verdaccio 6.8.0 with ``npm ci`` from ``bench/peers/verdaccio`` (package.json and
  package-lock.json; 6.10 wants Node 22, 6.8.0 runs on Node 20 with node-fetch 2.7.0).

Each install is redone only when its lock file changes (a stamp holds the lock's sha256).

Each server starts with one user made the way an operator would, and its local index:

* devpi: ``devpi-init``, then a user ``bench`` and a non-volatile index ``bench/dev``
  through its REST API; twine uploads with that user's password (HTTP Basic);
* pypiserver: an htpasswd file (``-a update``: uploads authenticated, reads open);
* Verdaccio: the htpasswd plugin, a user registered as ``npm adduser`` does (``PUT
  /-/user/org.couchdb.user:bench``), its token for npm; ``max_body_size`` raised from
  the 10 MB default so it can take the benchmark's tarball at all.

Logging is at warning or error for all three: a log line per request is a cost users
can turn off, so the peers run at their best.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness import REPO, Server, free_port, json_request, spawn, wait_ready

VENV = REPO / ".venv-bench"
LOCK = REPO / "bench" / "peers" / "requirements.lock"
VERDACCIO_DIR = REPO / "bench" / "peers" / "verdaccio"
VERDACCIO = VERDACCIO_DIR / "node_modules" / ".bin" / "verdaccio"
USER = "bench"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(command: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}: {(proc.stderr or proc.stdout)[-800:]}")


def install_python_peers() -> None:
    stamp = VENV / ".bench-stamp"
    wanted = _sha256(LOCK)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"peers: installing {LOCK.relative_to(REPO)} into {VENV.name}", file=sys.stderr)
    python = os.environ.get("BENCH_PEERS_PYTHON", "python3")
    run([python, "-m", "venv", "--clear", str(VENV)])
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", "-r", str(LOCK)])
    run([*pip, "check"])
    stamp.write_text(wanted)


def install_verdaccio() -> None:
    stamp = VERDACCIO_DIR / "node_modules" / ".bench-stamp"
    wanted = _sha256(VERDACCIO_DIR / "package-lock.json")
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if shutil.which("npm") is None:
        raise RuntimeError("npm not found: Verdaccio cannot be installed")
    print("peers: npm ci of bench/peers/verdaccio", file=sys.stderr)
    run(["npm", "ci", "--no-audit", "--no-fund"], VERDACCIO_DIR)
    stamp.write_text(wanted)


def install() -> list[str]:
    """Install every peer that is not installed yet; why each one that failed did."""
    failures = []
    for name, step in (
        ("devpi/pypiserver", install_python_peers),
        ("verdaccio", install_verdaccio),
    ):
        try:
            step()
        except (RuntimeError, OSError) as exc:
            failures.append(f"{name}: {exc}")
    return failures


# -- what a client is given --------------------------------------------------------------


@dataclass(frozen=True)
class PyPIIndex:
    """A server's local PyPI index, as twine and pip are pointed at it."""

    server: Server
    upload_url: str  # twine --repository-url
    simple: str  # the path of the simple pages, up to the project's name
    user: str
    password: str

    def page(self, project: str) -> str:
        return f"{self.simple}{project}/"

    @property
    def basic(self) -> str:
        pair = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {pair}"


@dataclass(frozen=True)
class NpmRegistry:
    """A server's local npm registry, as npm is pointed at it."""

    server: Server
    registry: str  # npm --registry, ending in /
    token: str  # npm's _authToken for it, sent as Bearer

    def packument(self, name: str) -> str:
        path = self.registry.split("://", 1)[1].split("/", 1)[1]
        return f"/{path}{name.replace('/', '%2f')}"

    def npmrc(self, directory: Path) -> Path:
        """A userconfig holding the token for this registry, as ``npm login`` writes it."""
        path = directory / f"npmrc-{self.server.name}"
        host_path = self.registry.split("://", 1)[1]
        path.write_text(f"//{host_path}:_authToken={self.token}\n")
        return path


# -- the servers ---------------------------------------------------------------------------


def bin_path(name: str) -> str:
    path = VENV / "bin" / name
    if not path.exists():
        raise RuntimeError(f"{path} missing: python -m bench.peers installs it")
    return str(path)


def serve_devpi(directory: Path, serverdir: Path) -> Server:
    """devpi-server with its defaults (waitress, 50 threads) on an initialised ``serverdir``."""
    logger = directory / "logger.json"
    logger.write_text(json.dumps({"version": 1, "root": {"level": "WARNING"}}))
    port = free_port()
    command = [bin_path("devpi-server"), "--serverdir", str(serverdir), "--host", "127.0.0.1",
               "--port", str(port), "--logger-cfg", str(logger)]  # fmt: skip
    server = Server("devpi", f"http://127.0.0.1:{port}", spawn(command, directory), directory)
    return wait_ready(server, f"{server.base}/+api")


def devpi_index(server: Server, password: str) -> PyPIIndex:
    server.user, server.password = USER, password
    return PyPIIndex(server, f"{server.base}/{USER}/dev/", f"/{USER}/dev/+simple/", USER, password)


def start_devpi(directory: Path) -> PyPIIndex:
    """devpi-server, a user and its local index, made through devpi's REST API."""
    serverdir = directory / "server"
    root_password = secrets.token_hex(16)
    run([bin_path("devpi-init"), "--serverdir", str(serverdir), "--no-root-pypi",
          "--root-passwd", root_password])  # fmt: skip
    server = serve_devpi(directory, serverdir)
    password = secrets.token_hex(16)
    json_request(f"{server.base}/{USER}", "PUT", {"password": password})
    login = json_request(f"{server.base}/+login", "POST", {"user": USER, "password": password})
    token = base64.b64encode(f"{USER}:{login['result']['password']}".encode()).decode()
    index = {"type": "stage", "bases": [], "volatile": False}
    json_request(f"{server.base}/{USER}/dev", "PUT", index, {"X-Devpi-Auth": token})
    return devpi_index(server, password)


def start_pypiserver(directory: Path) -> PyPIIndex:
    """pypiserver on waitress (its ``auto`` choice when installed), uploads behind htpasswd."""
    packages = directory / "packages"
    packages.mkdir()
    password = secrets.token_hex(16)
    htpasswd = directory / "htpasswd"
    script = (
        "import sys; from passlib.apache import HtpasswdFile;"
        " f = HtpasswdFile(sys.argv[1], new=True, default_scheme='apr_md5_crypt');"
        " f.set_password(sys.argv[2], sys.argv[3]); f.save()"
    )
    run([bin_path("python"), "-c", script, str(htpasswd), USER, password])
    port = free_port()
    command = [bin_path("pypi-server"), "run", "--host", "127.0.0.1", "--port", str(port),
               "--authenticate", "update", "--passwords", str(htpasswd),
               "--disable-fallback", "--log-stream", "stderr", str(packages)]  # fmt: skip
    server = Server("pypiserver", f"http://127.0.0.1:{port}", spawn(command, directory), directory)
    wait_ready(server, f"{server.base}/health")
    server.user, server.password = USER, password
    return PyPIIndex(server, f"{server.base}/", "/simple/", USER, password)


def start_verdaccio(directory: Path, max_body_mib: int) -> NpmRegistry:
    """Verdaccio with htpasswd auth, no uplink, reads and publishes for signed-in users."""
    if not VERDACCIO.exists() or shutil.which("node") is None:
        raise RuntimeError(f"{VERDACCIO} missing: python -m bench.peers installs it")
    port = free_port()
    config = {
        "storage": str(directory / "storage"),
        "auth": {"htpasswd": {"file": str(directory / "htpasswd"), "max_users": 10}},
        "uplinks": {},
        "packages": {"**": {"access": "$authenticated", "publish": "$authenticated"}},
        "max_body_size": f"{max_body_mib}mb",
        "log": {"type": "stdout", "format": "pretty", "level": "error"},
        "web": {"enable": False},
    }
    path = directory / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    command = [str(VERDACCIO), "--config", str(path), "--listen", f"127.0.0.1:{port}"]
    server = Server("verdaccio", f"http://127.0.0.1:{port}", spawn(command, directory), directory)
    wait_ready(server, f"{server.base}/-/ping")
    password = secrets.token_hex(16)
    user = {"_id": f"org.couchdb.user:{USER}", "name": USER, "password": password,
            "type": "user", "roles": []}  # fmt: skip
    answer = json_request(f"{server.base}/-/user/org.couchdb.user:{USER}", "PUT", user)
    server.user, server.password = USER, password
    return NpmRegistry(server, f"{server.base}/", str(answer["token"]))


def main() -> int:
    failures = install()
    for failure in failures:
        print(f"peers: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
