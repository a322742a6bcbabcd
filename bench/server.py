"""Run the real server, as `make serve` does, in a subprocess on loopback: for the benchmarks, and for
the test that serves from the image's built runtime."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"


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


def built_runtime_environment(prefix: Path, storage: Path) -> dict[str, str]:
    """What the image sets for the runtime deploy/build_image.sh built into `prefix`, and nothing of
    this checkout's environment: the service then imports nothing from a source tree. `storage`:
    the SQLite file standing for the image's volume."""
    return {
        "PATH": f"{prefix / 'venv' / 'bin'}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "FACEVER_WEIGHTS_DIR": str(prefix / "weights" / "fused-dlib-sface-yunet-int8"),
        "FACEVER_DETECTORS_DIR": str(prefix / "weights"),
        "FACEVER_STORAGE_URL": f"sqlite:///{storage}",
    }


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The settings a benchmarked server ran with besides the defaults (API keys left out), for its report."""
    return {
        name: value
        for name, value in {**os.environ, **env}.items()
        if (name.startswith("FACEVER_") and name != "FACEVER_API_KEYS") or name.startswith("MALLOC_")
    }


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int
    seconds_to_ready: float


def wait_ready(process: subprocess.Popen, base_url: str, timeout_s: float) -> None:
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
def running_server(
    env: Mapping[str, str],
    *,
    port: int = 0,
    ready_timeout_s: float = 180,
    facever: Path | None = None,
    cwd: Path | str | None = None,
    inherit_environment: bool = True,
) -> Iterator[Server]:
    """`facever serve` (this environment's, or the `facever` executable given) with `env` added to
    this process's environment, or only `env` without `inherit_environment`, over the image's own
    its log is shown only if it fails. The service sets its own malloc settings (app/allocator.py), so
    figures match the container's."""
    port = port or free_port()
    base_url = f"http://{HOST}:{port}"
    facever = facever or Path(sys.executable).with_name("facever")
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [str(facever), "serve", "--host", HOST, "--port", str(port)],
            env={**(os.environ if inherit_environment else {}), **env},
            cwd=cwd,
            stdout=log,
            stderr=log,
        )
        try:
            wait_ready(process, base_url, ready_timeout_s)
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
