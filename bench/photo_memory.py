"""The server's resident memory over a stream of photos as users send them, every one of a size not
sent before (model.evaluation.photo_mix, seeded): the worst case for anything kept per input shape.

Starts `facever serve` (as bench.memory does), sends --warm-up photos, then --photos more to /embed,
one photo a request, from --clients clients at once, and reads the server's VmRSS from /proc after the
warm-up and every --every photos. The photos are made once, before the server starts, into a
temporary folder, so that making 12 MP JPEGs does not throttle the clients. Prints the samples and
writes bench/results/photo_memory[_<cap>].json; exits 1 where a request failed with a 5xx.

    python -m bench.photo_memory [--photos 5000] [--warm-up 200] [--clients 1 4]
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

import httpx

from bench.machine import parse_server_bench, server_bench_parser, write_report
from bench.server import memory_mib, running_server, server_environment
from model.evaluation.photo_mix import photo_mix

SEED = 33


async def stream(base_url: str, files: list[Path], clients: int, pid: int, every: int) -> tuple[list, Counter]:
    """Every file posted once, `clients` at a time; (photos sent, MiB) every `every`, and the outcomes."""
    samples, outcomes, queue, sent = [], Counter(), iter(enumerate(files, 1)), 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        for _, path in queue:
            response = await http.post("/embed", files={"images": (path.name, path.read_bytes())})
            code = response.json().get("error", {}).get("code") if response.status_code != 200 else None
            outcomes[f"{response.status_code} {code}" if code else str(response.status_code)] += 1
            sent += 1
            if sent % every == 0:
                samples.append((sent, round(memory_mib(pid), 1)))

    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return samples, outcomes


def main() -> None:
    parser = server_bench_parser(__doc__, "photo_memory")
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--warm-up", type=int, default=200)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--every", type=int, default=250)
    args = parse_server_bench(parser, "bench.photo_memory")
    env = {"FACEVER_LOG_LEVEL": "WARNING", "FACEVER_MAX_UPLOAD_BYTES": str(32 * 1024 * 1024)}
    runs, classes = [], Counter()
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for index, photo in enumerate(photo_mix(args.data / "lfw" / "images", args.warm_up + args.photos, SEED,
                                                distinct_sizes=True)):
            path = Path(folder) / f"{index:05d}.jpg"
            path.write_bytes(photo.data)
            files.append(path)
            classes[photo.size_class] += 1
        print(f"{len(files)} photos of distinct sizes made: {dict(classes)}")
        for clients in args.clients:
            with running_server(env) as server:
                ready = memory_mib(server.pid)
                warm, warm_outcomes = asyncio.run(stream(server.base_url, files[: args.warm_up], clients, server.pid,
                                                         args.warm_up))
                after_warm_up = memory_mib(server.pid)
                samples, outcomes = asyncio.run(stream(server.base_url, files[args.warm_up :], clients, server.pid,
                                                       args.every))
                final = memory_mib(server.pid)
                peak = memory_mib(server.pid, "VmHWM")
            outcomes.update(warm_outcomes)
            run = {"clients": clients, "ready_mib": round(ready, 1), "after_warm_up_mib": round(after_warm_up, 1),
                   "final_mib": round(final, 1), "peak_mib": round(peak, 1),
                   "final_over_warm_up": round(final / after_warm_up, 3), "samples": samples,
                   "outcomes": dict(outcomes)}
            runs.append(run)
            print(f"{clients} client(s): ready {ready:.0f} MiB, after {args.warm_up} photos {after_warm_up:.0f}, "
                  f"after {args.photos} more {final:.0f} ({final / after_warm_up:.3f}x), peak {peak:.0f}; "
                  f"{dict(outcomes)}")
            print("  " + ", ".join(f"{count}: {mib:.0f}" for count, mib in samples))
    write_report(args.output, {
        "what": "VmRSS of facever serve (MiB) over /embed of photos of the mix, one a request, each of a size "
                "not sent before",
        "photos": args.photos, "warm_up": args.warm_up, "seed": SEED, "size_classes": dict(classes),
        "runs": runs, "server_environment": server_environment(env),
    })
    if any(outcome.startswith("5") for run in runs for outcome in run["outcomes"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
