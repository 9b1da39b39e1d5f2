"""Real processes for end-to-end tests: artifactapi replicas and an nginx balancer."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests import services
from tests.processes import serving


def require_tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        services.unavailable(name, "not installed (apt-get install skopeo nginx-light)")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def artifactapi(directory: Path, config: dict[str, Any]) -> Iterator[str]:
    """One replica as a real process; yields its base URL."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "artifactapi.yaml").write_text(yaml.safe_dump(config))
    with serving(directory) as (_, url):
        yield url


@contextmanager
def replicas(directory: Path, config: dict[str, Any], count: int = 2) -> Iterator[list[str]]:
    with ExitStack() as stack:
        urls = []
        for index in range(count):
            replica_config = {**config, "server": {"host": "127.0.0.1", "port": 0}}
            urls.append(stack.enter_context(artifactapi(directory / f"r{index}", replica_config)))
        yield urls


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream replicas {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        location / {{
            proxy_pass http://replicas;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextmanager
def nginx_round_robin(directory: Path, upstreams: list[str]) -> Iterator[str]:
    """nginx balancing round-robin, no affinity, over ``upstreams``; yields its URL.

    Its access log records which replica answered each request
    (``$upstream_addr``), so a test can prove the split happened.
    """
    binary = require_tool("nginx")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    servers = "\n".join(f"        server {u.removeprefix('http://')};" for u in upstreams)
    conf = NGINX_CONF.format(dir=directory, servers=servers, port=port).replace(
        f"access_log {directory}/access.log;",
        "log_format split '$request_method $uri $status $upstream_addr';\n"
        f"    access_log {directory}/access.log split;",
    )
    (directory / "nginx.conf").write_text(conf)
    process = subprocess.Popen(
        [binary, "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def upstreams_used(directory: Path, method: str) -> set[str]:
    """The replicas that answered ``method`` requests, from the nginx access log."""
    used = set()
    for line in (directory / "access.log").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == method:
            used.add(parts[-1])
    return used
