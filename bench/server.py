"""Run the real server, as `make serve` does, in a subprocess on loopback for a benchmark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
# What the Dockerfile sets besides the FACEVER_* paths: glibc keeps 2 malloc arenas, not 8 per core.
IMAGE_ENVIRONMENT = {"MALLOC_ARENA_MAX": "2"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A /proc/<pid>/status memory line in MiB: VmRSS now, VmHWM the peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int
    seconds_to_ready: float


def _wait_ready(process: subprocess.Popen, base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the server was not ready within {timeout_s:g} s")


@contextmanager
def running_server(env: dict[str, str], port: int = 0, ready_timeout_s: float = 180) -> Iterator[Server]:
    """`facever serve` with `env` added to this environment (over the image's own MALLOC_ARENA_MAX=2,
    so figures match the container); its log is shown only if it fails."""
    port = port or free_port()
    base_url = f"http://{HOST}:{port}"
    facever = Path(sys.executable).with_name("facever")
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [str(facever), "serve", "--host", HOST, "--port", str(port)],
            env={**IMAGE_ENVIRONMENT, **os.environ, **env},
            stdout=log,
            stderr=log,
        )
        try:
            _wait_ready(process, base_url, ready_timeout_s)
            yield Server(base_url, process.pid, time.monotonic() - started)
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode} during the run")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            if process.returncode != -signal.SIGTERM:  # uvicorn ends by re-raising the SIGTERM it was sent
                log.seek(0)
                print(log.read().decode(errors="replace")[-4000:], file=sys.stderr)
