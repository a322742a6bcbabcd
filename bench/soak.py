"""Soak the real server: thousands of /verify requests from real LFW pairs against `facever serve`
in a subprocess on loopback, watching errors and the server's resident memory.

The server's VmRSS is sampled from /proc/<pid>/status throughout, and growth is measured from the
end of the warm-up (the first --warm-up requests) to the end. With many distinct --pairs it rises
over the first several hundred requests before it holds; with a few, inputs repeat soon and any
growth after the warm-up points at a leak. deploy/kubernetes/deployment.yaml sizes its memory
from these numbers. Writes bench/results/soak.json; exits 1 if any request failed.

    python -m bench.soak [--requests 5000] [--concurrency 4] [--max-seconds 600] [--pairs 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import cycle

import httpx

from bench.machine import parse_server_bench, server_bench_parser, write_report
from bench.server import memory_mib, running_server, server_environment
from model.evaluation.protocols import read_pairs

SAMPLE_EVERY_S = 0.5


class RssSampler(threading.Thread):
    """(seconds since start, MiB) of a process, every SAMPLE_EVERY_S, until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self._stop_event = pid, [], threading.Event()
        self._origin = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY_S):
            try:
                self.samples.append((round(time.monotonic() - self._origin, 1), round(memory_mib(self.pid), 1)))
            except FileNotFoundError:  # the server died; the soak reports its errors
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)  # of the answered requests
    outcomes: Counter = field(default_factory=Counter)  # "ok", "<status> <code>" or the transport error
    seconds: float = 0.0
    rss_after_warm_up: float | None = None


async def soak(base_url: str, pairs: list[tuple[bytes, bytes]], args: argparse.Namespace, pid: int) -> Run:
    """Send up to args.requests verifies, args.concurrency at a time, for at most args.max_seconds."""
    run, work, sent = Run(), cycle(pairs), 0
    started = time.monotonic()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < args.requests and time.monotonic() - started < args.max_seconds:
            sent += 1
            if sent == args.warm_up + 1:
                run.rss_after_warm_up = memory_mib(pid)
            first, second = next(work)
            request_started = time.perf_counter()
            try:
                response = await client.post("/verify", files={"image1": ("1.jpg", first), "image2": ("2.jpg", second)})
            except httpx.HTTPError as error:
                run.outcomes[type(error).__name__] += 1
                continue
            run.latencies_ms.append((time.perf_counter() - request_started) * 1000)
            if response.status_code == 200:
                run.outcomes["ok"] += 1
            else:
                run.outcomes[f"{response.status_code} {response.json().get('error', {}).get('code')}"] += 1

    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
    run.seconds = time.monotonic() - started
    return run


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    return {
        "median": round(statistics.median(values), 1),
        "p95": round(statistics.quantiles(values, n=20)[-1], 1),
        "p99": round(statistics.quantiles(values, n=100)[-1], 1),
        "max": round(max(values), 1),
    }


def main() -> None:
    parser = server_bench_parser(__doc__, "soak")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600, help="stop sending after this long")
    parser.add_argument("--warm-up", type=int, default=50, help="requests before the baseline RSS")
    parser.add_argument("--pairs", type=int, default=500, help="LFW pairs (pairs.txt order) to cycle through")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parse_server_bench(parser, "bench.soak")

    images = args.data / "lfw" / "images"
    pairs = [
        ((images / p.first).read_bytes(), (images / p.second).read_bytes())
        for p in read_pairs(args.data / "lfw" / "pairs.txt")[: args.pairs]
    ]
    env = {"FACEVER_LOG_LEVEL": "WARNING"}  # one access line per request would swamp the log
    with running_server(env, port=args.port) as server:
        service = httpx.get(f"{server.base_url}/info", timeout=10).json()["service"]
        print(f"engine {service['engine']}, {service['precision']}, flip TTA {service['flip_tta']}")
        rss_ready = memory_mib(server.pid)
        sampler = RssSampler(server.pid)
        sampler.start()
        run = asyncio.run(soak(server.base_url, pairs, args, server.pid))
        rss_end = memory_mib(server.pid)
        sampler.stop()

    answered = sum(run.outcomes.values())
    errors = answered - run.outcomes["ok"]
    baseline = run.rss_after_warm_up or rss_ready
    result = {
        "what": "POST /verify (multipart, two 250x250 LFW JPEGs) against `facever serve` on loopback",
        "engine": service["engine"],
        "precision": service["precision"],
        "requests": answered,
        "ok": run.outcomes["ok"],
        "errors": errors,
        "outcomes": dict(run.outcomes),
        "concurrency": args.concurrency,
        "pairs": len(pairs),
        "seconds": round(run.seconds, 1),
        "requests_per_s": round(answered / run.seconds, 2),
        "latency_ms": percentiles(run.latencies_ms),
        "rss_mib": {
            "ready": round(rss_ready, 1),
            f"after_{args.warm_up}_requests": round(baseline, 1),
            "end": round(rss_end, 1),
            "peak": round(max([rss_end, baseline, *(mib for _, mib in sampler.samples)]), 1),
            "growth_after_warm_up_pct": round((rss_end - baseline) / baseline * 100, 2),
        },
        "rss_series_s_mib": sampler.samples[:: max(1, len(sampler.samples) // 60)],  # about 60 points
        "server_environment": server_environment(env),
    }
    write_report(args.output, result)
    summary = {key: result[key] for key in ("requests", "errors", "seconds", "requests_per_s", "latency_ms", "rss_mib")}
    print(json.dumps(summary, indent=2))
    raise SystemExit(1 if errors else 0)


if __name__ == "__main__":
    main()
