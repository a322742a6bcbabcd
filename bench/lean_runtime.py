"""What leaving torch out of serving saves: this tree's lean runtime against the last torch-carrying
build, both built from clean by deploy/build_image.sh (the image's own steps) and served by the
real `facever serve` on loopback, in the same run and on the same CPU.

    python -m bench.lean_runtime [--baseline 6280ee4] [--starts 5] [--requests 200] [--cap avx2]

For each build: the installed size of its runtime (the venv and the weights, what the image adds to
python:3.11-slim); the seconds from process start to /health/ready and the resident memory then
(VmRSS, and the peak VmHWM), medians of --starts starts taken in turns; /verify of real LFW pairs at
concurrency 1 (p50) and 4 (verifies per second), each beside the OpenCV peer timed between its
requests (bench.latency's PeerClock, so each build's figures are ratios against the peer as
measured around them), and the peak VmHWM after that load. Then bench.peer_speed (ours against the
peer per image, in process) on each tree's own sources with this checkout's environment. Prints
every figure with the lean/torch ratio and writes bench/results/lean_runtime[_<cap>].json.

The baseline is the commit before the lean runtime (6280ee4): its serving imports torch for
alignment, MTCNN and the plumbing around the compiled networks, and its image carries torch.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from itertools import cycle
from pathlib import Path

import httpx

from bench.latency import PEER_ROUND, PeerClock, load
from bench.machine import parse_server_bench, server_bench_parser, write_report
from bench.server import built_runtime_environment, memory_mib, running_server
from model.engines.cpu import isa_caps, isa_suffix
from model.evaluation.protocols import read_pairs
from model.paths import REPO_ROOT

BASELINE = "6280ee4"  # the last commit whose serving imports torch
BUILDS = ("lean", "torch")


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def sources(build: str, baseline: str, work: Path) -> Path:
    """The tree a build is made from: this checkout, or the baseline commit extracted from git."""
    if build == "lean":
        return REPO_ROOT
    tree = work / "baseline-src"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", baseline], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def build_runtime(tree: Path, prefix: Path) -> None:
    """deploy/build_image.sh all, as the Dockerfile's steps; torch (the baseline's) from pip's own
    configuration (TORCH_INDEX_URL empty), as CI builds it."""
    prefix.mkdir(mode=0o755)
    result = subprocess.run(["bash", str(tree / "deploy" / "build_image.sh"), "all", str(prefix)],
                            env={**os.environ, "TORCH_INDEX_URL": ""}, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"building {prefix} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def serve(prefix: Path, storage: Path):
    """The built runtime served as the image serves it, under this run's ISA cap."""
    env = {**built_runtime_environment(prefix, storage), "FACEVER_LOG_LEVEL": "WARNING", **isa_caps()}
    return running_server(env, facever=prefix / "venv" / "bin" / "facever", cwd="/", inherit_environment=False)


def start_up(prefix: Path, storage: Path) -> dict[str, float]:
    with serve(prefix, storage) as server:
        return {"seconds_to_ready": server.seconds_to_ready, "rss_ready_mib": memory_mib(server.pid),
                "peak_rss_ready_mib": memory_mib(server.pid, "VmHWM")}


def under_load(prefix: Path, storage: Path, pairs: list[tuple[bytes, bytes]], requests: int) -> dict:
    """/verify at concurrency 1 and 4 beside the OpenCV peer, then the peak resident memory."""
    peer, source = PeerClock(), cycle(pairs)
    results = {}
    with serve(prefix, storage) as server:
        for concurrency in (1, 4):
            batch = [{"path": "/verify", "files": {"image1": ("1.jpg", a), "image2": ("2.jpg", b)}}
                     for a, b in (next(source) for _ in range(requests))]
            if concurrency > 1:
                peer.round(batch[:PEER_ROUND])
            results[f"verify_c{concurrency}"] = asyncio.run(
                load(server.base_url, batch, concurrency, peer.after_request if concurrency == 1 else None))
            if concurrency > 1:
                peer.round(batch[:PEER_ROUND])
        engine = httpx.get(f"{server.base_url}/info").json()["service"]["engine"]
        return {"engine": engine, "peak_rss_under_load_mib": round(memory_mib(server.pid, "VmHWM"), 1),
                "verify": results, "peer": peer.report(results)}


def peer_speed(tree: Path, cap: str | None, data: Path) -> dict:
    """bench.peer_speed on `tree`'s sources, in this checkout's environment (torch and the peer's
    OpenCV installed), read from the report it writes in that tree."""
    command = [sys.executable, "-m", "bench.peer_speed", "--data", str(data), *(["--cap", cap] if cap else [])]
    subprocess.run(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True, capture_output=True)
    report = json.loads((tree / "bench" / "results" / f"peer_speed{isa_suffix()}.json").read_text())
    return {"ours_ms": report["ours"]["median_ms"], "peer_ms": report["peer"]["median_ms"],
            "ratio_ours_to_peer": report["ratio_ours_to_peer"]}


def ratio(lean: float, torch: float) -> float:
    return round(lean / torch, 3)


def main() -> None:
    parser = server_bench_parser(__doc__, "lean_runtime")
    parser.add_argument("--baseline", default=BASELINE, help="the torch-carrying commit to compare with")
    parser.add_argument("--starts", type=int, default=5, help="start-ups per build, taken in turns")
    parser.add_argument("--requests", type=int, default=200, help="/verify requests per concurrency")
    args = parse_server_bench(parser, "bench.lean_runtime")
    images = args.data / "lfw" / "images"
    pairs = [((images / p.first).read_bytes(), (images / p.second).read_bytes())
             for p in read_pairs(args.data / "lfw" / "pairs.txt")[: args.requests]]

    work = Path(tempfile.mkdtemp(prefix="facever-lean-"))
    work.chmod(0o755)
    try:
        trees = {build: sources(build, args.baseline, work) for build in BUILDS}
        prefixes = {build: work / build for build in BUILDS}
        for build in BUILDS:
            print(f"building the {build} runtime from {trees[build]} ...", flush=True)
            build_runtime(trees[build], prefixes[build])
        report: dict = {build: {"venv_mb": round(folder_bytes(prefixes[build] / "venv") / 1e6, 1),
                                "weights_mb": round(folder_bytes(prefixes[build] / "weights") / 1e6, 1)}
                        for build in BUILDS}
        for build in BUILDS:
            report[build]["installed_mb"] = round(report[build]["venv_mb"] + report[build]["weights_mb"], 1)
        starts: dict[str, list[dict]] = {build: [] for build in BUILDS}
        for _ in range(args.starts):
            for build in BUILDS:
                starts[build].append(start_up(prefixes[build], work / f"{build}.sqlite3"))
        for build in BUILDS:
            report[build].update({name: round(statistics.median(start[name] for start in starts[build]), 2)
                                  for name in starts[build][0]})
            report[build].update(under_load(prefixes[build], work / f"{build}.sqlite3", pairs, args.requests))
            report[build]["peer_speed"] = peer_speed(trees[build], args.cap, args.data)
    finally:
        shutil.rmtree(work)

    lean, torch = report["lean"], report["torch"]
    figures = {
        "installed size, MB": ("installed_mb", lambda r: r["installed_mb"]),
        "seconds to ready": ("seconds_to_ready", lambda r: r["seconds_to_ready"]),
        "RSS at ready, MiB": ("rss_ready_mib", lambda r: r["rss_ready_mib"]),
        "peak RSS by ready, MiB": ("peak_rss_ready_mib", lambda r: r["peak_rss_ready_mib"]),
        "peak RSS under load, MiB": ("peak_rss_under_load_mib", lambda r: r["peak_rss_under_load_mib"]),
        "/verify p50 c1, ms": ("verify_c1_p50_ms", lambda r: r["verify"]["verify_c1"]["p50_ms"]),
        "/verify p50 c1 / peer image": ("verify_c1_p50_over_peer", lambda r: r["peer"]["verify_c1_p50_over_peer"]),
        "verifies/s c4": ("verify_c4_per_s", lambda r: r["verify"]["verify_c4"]["ok_per_s"]),
        "verifies/s c4 x peer image / 1000": ("verify_c4_rate_over_peer", lambda r: r["peer"]["verify_c4_rate_over_peer"]),
        "per image / peer (in process)": ("peer_speed_ratio", lambda r: r["peer_speed"]["ratio_ours_to_peer"]),
    }
    ratios = {}
    print(f"{'':36} {'lean':>9} {'torch':>9} {'lean/torch':>10}")
    for label, (key, value) in figures.items():
        ratios[key] = ratio(value(lean), value(torch))
        print(f"{label:36} {value(lean):>9} {value(torch):>9} {ratios[key]:>10}")
    write_report(args.output, {
        "what": "this tree's lean runtime against the torch-carrying baseline, both built by "
                "deploy/build_image.sh and served by facever serve, in one run",
        "baseline": args.baseline, "starts": args.starts, "requests": args.requests,
        "lean": lean, "torch": torch, "lean_over_torch": ratios,
    })


if __name__ == "__main__":
    main()
