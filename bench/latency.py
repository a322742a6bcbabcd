"""Latency and throughput of the real server, as `make serve` runs it, on loopback.

/verify with real LFW pairs (two 250x250 JPEGs per request, multipart) at concurrency 1, 4 and 16,
then /embed with 1 and 16 images per request: p50/p95/p99 latency, throughput, answers by status,
the server's peak RSS (VmHWM) and its time from start to ready. Prints a table and writes
bench/results/latency.json (latency_<cap>.json under --cap <cap>, e.g. latency_avx2.json; under
bench/results/<card>/ with --weights). Settings pass through as FACEVER_* environment variables.

    python -m bench.latency [--requests 200] [--weights weights/fused-dlib-sface-yunet] [--cap avx2] [--peer]

`--peer` also times the OpenCV peer of bench.peer_speed (the `bench` extra) on the same images, in
the same run and under the same cap: on both images of every concurrency-1 request right after its
answer (the server idle meanwhile), and on a round of them before and after the concurrency-4 load.
The report then gives /verify p50 at concurrency 1 over the peer's per-image median, and verifies
per second at concurrency 4 over 1000 / that median: machines drift between runs, ratios in one do
not.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

import httpx

from bench.machine import parse_server_bench, server_bench_parser, write_report
from bench.server import memory_mib, running_server, server_environment
from model.evaluation.protocols import read_pairs

VERIFY_CONCURRENCY = (1, 4, 16)
EMBED_BATCHES = (1, 16)


def summarise(latencies_ms: list[float], outcomes: Counter, seconds: float) -> dict:
    ordered = sorted(latencies_ms)

    def percentile(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "requests": sum(outcomes.values()),
        "ok": outcomes["200"],
        "outcomes": dict(outcomes),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "ok_per_s": round(outcomes["200"] / seconds, 2),
        "seconds": round(seconds, 2),
    }


async def load(base_url: str, requests: list[dict], concurrency: int,
               after_each: Callable[[dict], None] | None = None) -> dict:
    """Send every request, `concurrency` at a time; latency of every answer, outcome by status/code.
    `after_each(request)` runs once each answer is in, outside the timing (blocking the client)."""
    latencies, outcomes, queue = [], Counter(), iter(requests)

    async def worker(client: httpx.AsyncClient) -> None:
        for request in queue:
            started = time.perf_counter()
            response = await client.post(request["path"], files=request["files"])
            latencies.append((time.perf_counter() - started) * 1000)
            code = response.json().get("error", {}).get("code") if response.status_code != 200 else None
            outcomes[f"{response.status_code} {code}" if code else str(response.status_code)] += 1
            if after_each:
                after_each(request)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        for _ in range(3):  # connection and first-shape warm-up, not timed
            await client.post(requests[0]["path"], files=requests[0]["files"])
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return summarise(latencies, outcomes, time.perf_counter() - started)


PEER_ROUND = 20  # requests whose images the peer embeds before and after a concurrent load


class PeerClock:
    """The OpenCV peer's per-image time, measured between the service's requests (bench.peer_speed's
    pipeline, on the client's side, while the server idles)."""

    def __init__(self) -> None:
        from bench.peer_speed import OpenCVPeer, peer_description

        self.peer = OpenCVPeer(threads=len(os.sched_getaffinity(0)))
        self.what = peer_description(self.peer)
        self.c1_ms: list[float] = []
        self.rounds_ms: list[float] = []

    def _timed(self, request: dict) -> list[float]:
        times = []
        for _, data in request["files"].values():
            started = time.perf_counter()
            self.peer.embed(data)
            times.append((time.perf_counter() - started) * 1000)
        return times

    def after_request(self, request: dict) -> None:
        self.c1_ms += self._timed(request)

    def round(self, requests: list[dict]) -> None:
        for request in requests:
            self.rounds_ms += self._timed(request)

    def report(self, results: dict) -> dict:
        per_image = statistics.median(self.c1_ms + self.rounds_ms)
        return {"what": self.what, "per_image_ms": round(per_image, 2),
                "per_image_ms_beside_c1": round(statistics.median(self.c1_ms), 2),
                "per_image_ms_around_c4": round(statistics.median(self.rounds_ms), 2),
                "images": len(self.c1_ms) + len(self.rounds_ms),
                "verify_c1_p50_over_peer": round(results["verify_c1"]["p50_ms"] / per_image, 3),
                "verify_c4_rate_over_peer": round(results["verify_c4"]["ok_per_s"] * per_image / 1000, 3)}


def main() -> None:
    parser = server_bench_parser(__doc__, "latency")
    parser.add_argument("--requests", type=int, default=200, help="requests per case")
    parser.add_argument("--weights", type=Path, help="FACEVER_WEIGHTS_DIR (default: the service's)")
    parser.add_argument("--peer", action="store_true", help="time the OpenCV peer in the same run (see above)")
    args = parse_server_bench(parser, "bench.latency")
    peer = PeerClock() if args.peer else None

    images = args.data / "lfw" / "images"
    protocol = read_pairs(args.data / "lfw" / "pairs.txt")[: args.requests]
    pairs = cycle([((images / p.first).read_bytes(), (images / p.second).read_bytes()) for p in protocol])
    env = {"FACEVER_LOG_LEVEL": "WARNING"}
    if args.weights:
        env["FACEVER_WEIGHTS_DIR"] = str(args.weights.resolve())

    results: dict = {}
    with running_server(env) as server:
        for concurrency in VERIFY_CONCURRENCY:
            requests = [
                {"path": "/verify", "files": {"image1": ("1.jpg", a), "image2": ("2.jpg", b)}}
                for a, b in (next(pairs) for _ in range(args.requests))
            ]
            if peer and concurrency > 1:
                peer.round(requests[:PEER_ROUND])
            after_each = peer.after_request if peer and concurrency == 1 else None
            results[f"verify_c{concurrency}"] = asyncio.run(load(server.base_url, requests, concurrency, after_each))
            if peer and concurrency > 1:
                peer.round(requests[:PEER_ROUND])
        for batch in EMBED_BATCHES:
            requests = [
                {"path": "/embed", "files": [("images", (f"{i}.jpg", next(pairs)[0])) for i in range(batch)]}
                for _ in range(max(10, args.requests // batch))
            ]
            results[f"embed_b{batch}"] = asyncio.run(load(server.base_url, requests, 1))
        info = httpx.get(f"{server.base_url}/info").json()
        report = {
            "what": "facever serve on loopback; /verify: two 250x250 LFW JPEGs (multipart); /embed: n images",
            "model": info["model"]["name"],
            "flip_tta": info["service"]["flip_tta"],
            "precision": info["service"]["precision"],
            "engine": info["service"]["engine"],
            "detector": info["service"]["detector"],
            "seconds_to_ready": round(server.seconds_to_ready, 2),
            "peak_rss_mib": round(memory_mib(server.pid, "VmHWM"), 1),
            "results": results,
            "server_environment": server_environment(env),
        }
        if peer:
            report["peer"] = peer.report(results)
    print(f"{report['model']} ({report['engine']}, {report['precision']}, flip TTA {report['flip_tta']}): ready in {report['seconds_to_ready']} s, "
          f"peak RSS {report['peak_rss_mib']} MiB")
    print(f"{'case':<12} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'ok/s':>7}  outcomes")
    for case, r in results.items():
        print(f"{case:<12} {r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7} {r['ok_per_s']:>7}  {r['outcomes']}")
    if peer:
        same_run = report["peer"]
        print(f"peer ({same_run['what']}): {same_run['per_image_ms']} ms per image in this run; /verify p50 at "
              f"concurrency 1 = {same_run['verify_c1_p50_over_peer']} x that (goal <= 1.5), verifies/s at "
              f"concurrency 4 = {same_run['verify_c4_rate_over_peer']} x 1000 / that (goal >= 0.7)")
    write_report(args.output, report)


if __name__ == "__main__":
    main()
