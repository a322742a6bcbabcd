"""What keys cost and how their limits hold, on real `facever serve` processes over SQLite (loopback).

    python -m bench.keys [--keys 10000] [--requests 200] [--rate 10] [--seconds 10] [--cap avx2]

Two measurements, written to bench/results/keys.json:
- cost: two servers of this build side by side, one with keys off (no key anywhere: the open
  service) and one with --keys stored keys, asked in turn, one request at a time, so both see the
  same machine: /verify on an LFW pair, and an enrolment (one embedding into a fresh subject, with
  its enrolment check and audit entry), each p50 and the difference, keys on minus off;
- audit: the storage write of an enrolment with and without its audit entry, in this process on a
  SQLite file (the servers above both audit: the open service's writes are audited too);
- limits: one key sent requests at 3x its rate for --seconds, another key at half its own rate
  beside it: the first's admitted rate against its limit, its 429s and their Retry-After, and the
  second's refusals (none expected).
Under --cap the servers' libraries are held to that ISA (bench/results/keys_<cap>.json).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from app.security import SCOPES, Principal
from app.services.keys import create_key
from app.storage import open_storage
from app.storage.audit import AuditEvent
from app.storage.base import NewTemplate
from bench.machine import add_cap_argument, apply_cap, write_report
from bench.server import running_server
from model.engines.cpu import isa_suffix
from model.paths import DEFAULT_DATA_DIR, REPORTS_DIR
from model.types import EmbeddingModel

ROOT = "bench-root-key"  # the environment's write key of the server with keys on
PAIR = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg")
BENCH = Principal("bench", frozenset(SCOPES), None)


def stored_keys(url: str, count: int) -> str:
    """`count` stored keys in the database at `url` (as `facever keys create` makes them); the secret
    of one of them, with every scope and a rate limit the cost bench never reaches."""
    storage = open_storage(url)
    storage.migrate()
    secret = create_key(storage, "bench", list(SCOPES), None, None, 1e5, 100_000, BENCH).secret
    for index in range(count - 1):
        create_key(storage, f"tenant-{index}", ["read", "enrol"], [f"tenant-{index}-*"], None, None, None, BENCH)
    storage.close()
    return secret


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def measure_cost(data_dir: Path, keys: int, requests: int) -> dict:
    photos = [(data_dir / "lfw" / "images" / name).read_bytes() for name in PAIR]
    files = {"image1": ("a.jpg", photos[0]), "image2": ("b.jpg", photos[1])}
    with tempfile.TemporaryDirectory() as folder:
        on_url, off_url = f"sqlite:///{folder}/on.sqlite3", f"sqlite:///{folder}/off.sqlite3"
        started = time.perf_counter()
        secret = stored_keys(on_url, keys)
        created_s = time.perf_counter() - started
        with running_server({"FACEVER_STORAGE_URL": on_url, "FACEVER_WRITE_API_KEYS": ROOT}) as on, \
                running_server({"FACEVER_STORAGE_URL": off_url}) as off, httpx.Client(timeout=60) as client:
            servers = {"on": (on.base_url, {"X-API-Key": secret}), "off": (off.base_url, {})}
            for base_url, headers in servers.values():
                assert client.post(f"{base_url}/galleries", json={"id": "bench"}, headers=headers).status_code == 201
                embedding = client.post(f"{base_url}/embed", files={"images": ("a.jpg", photos[0])},
                                        headers=headers).json()["embeddings"][0]
            times: dict[str, dict[str, list[float]]] = {name: {"verify": [], "enrol": []} for name in servers}
            for index in range(requests):
                for name, (base_url, headers) in servers.items():
                    answer, elapsed = timed(client, "POST", f"{base_url}/verify", headers, files=files)
                    assert answer.status_code == 200, answer.text
                    times[name]["verify"].append(elapsed)
                    subject = f"s{index}"
                    assert client.post(f"{base_url}/galleries/bench/subjects", json={"id": subject},
                                       headers=headers).status_code == 201
                    answer, elapsed = timed(client, "POST", f"{base_url}/galleries/bench/subjects/{subject}/faces",
                                            headers, json={"embeddings": [embedding]})
                    assert answer.status_code == 201, answer.text
                    times[name]["enrol"].append(elapsed)
    result = {"stored_keys": keys, "keys_created_s": round(created_s, 1), "requests": requests}
    for route in ("verify", "enrol"):
        on_ms, off_ms = p50(times["on"][route]), p50(times["off"][route])
        result[route] = {"p50_ms_keys_on": on_ms, "p50_ms_keys_off": off_ms, "added_ms": round(on_ms - off_ms, 3),
                         "ratio": round(on_ms / off_ms, 3)}
    return result


def measure_audit(writes: int) -> dict:
    """p50 of one enrolment's transaction (subject locked, check, template, revision) with its audit
    entry and without, alternated."""
    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{folder}/audit.sqlite3")
        storage.migrate()
        storage.create_gallery("bench")
        vector = np.ones(256, np.float32) / 16.0
        model = EmbeddingModel("bench", "1", "plain", "int8")
        times: dict[str, list[float]] = {"with": [], "without": []}
        for index in range(writes):
            for kind in times:
                subject = f"{kind}-{index}"
                storage.create_subject("bench", subject)
                event = AuditEvent("bench", "subject.enrol", "bench", subject, 201, "r") if kind == "with" else None
                started = time.perf_counter()
                storage.add_templates("bench", subject, [NewTemplate(vector, model)], lambda stored: None, 10, event)
                times[kind].append((time.perf_counter() - started) * 1000)
        storage.close()
    with_ms, without_ms = p50(times["with"]), p50(times["without"])
    return {"writes": writes, "p50_ms_with_audit": with_ms, "p50_ms_without": without_ms,
            "added_ms": round(with_ms - without_ms, 3)}


def timed(client: httpx.Client, method: str, url: str, headers: dict, **kwargs) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    answer = client.request(method, url, headers=headers, **kwargs)
    return answer, (time.perf_counter() - started) * 1000


async def send_at(client: httpx.AsyncClient, url: str, key: str, rate: float, seconds: float) -> list[httpx.Response]:
    """Requests at `rate` a second for `seconds`, each sent on schedule whatever the answers' times."""
    started = time.perf_counter()
    tasks = []
    for index in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(client.get(url, headers={"X-API-Key": key})))
    return await asyncio.gather(*tasks)


def measure_limits(rate: float, seconds: float) -> dict:
    burst = int(rate)
    with tempfile.TemporaryDirectory() as folder:
        with running_server({"FACEVER_STORAGE_URL": f"sqlite:///{folder}/limits.sqlite3",
                             "FACEVER_WRITE_API_KEYS": ROOT}) as server, httpx.Client(timeout=30) as client:
            made = [client.post(f"{server.base_url}/keys", headers={"X-API-Key": ROOT},
                                json={"name": name, "scopes": ["read"], "rate_per_s": rate, "burst": burst}).json()
                    for name in ("flooding", "steady")]

            async def both() -> tuple[list[httpx.Response], list[httpx.Response]]:
                limits = httpx.Limits(max_connections=200)
                async with httpx.AsyncClient(timeout=30, limits=limits) as session:
                    url = f"{server.base_url}/galleries"
                    return await asyncio.gather(send_at(session, url, made[0]["key"], 3 * rate, seconds),
                                                send_at(session, url, made[1]["key"], rate / 2, seconds))

            flooding, steady = asyncio.run(both())
    admitted = sum(answer.status_code == 200 for answer in flooding)
    limited = [answer for answer in flooding if answer.status_code == 429]
    admitted_rate = (admitted - burst) / seconds  # the burst is admitted at once, on top of the rate
    return {
        "rate_per_s": rate, "burst": burst, "seconds": seconds, "sent_per_s": 3 * rate,
        "flooding_key": {"sent": len(flooding), "admitted": admitted, "refused_429": len(limited),
                         "other_statuses": sorted({a.status_code for a in flooding} - {200, 429}),
                         "admitted_rate_per_s": round(admitted_rate, 2),
                         "admitted_rate_over_limit": round(admitted_rate / rate, 3),
                         "every_429_has_retry_after": all(a.headers.get("Retry-After", "").isdigit() for a in limited),
                         "retry_after_values": sorted({a.headers.get("Retry-After") for a in limited})},
        "steady_key": {"sent": len(steady), "admitted": sum(a.status_code == 200 for a in steady),
                       "refused": sum(a.status_code != 200 for a in steady)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=10_000, help="stored keys on the server with keys on")
    parser.add_argument("--requests", type=int, default=200, help="of each kind, to each server")
    parser.add_argument("--rate", type=float, default=10.0, help="the limited key's requests a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the limited key is flooded")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, help="default: bench/results/keys[_<cap>].json")
    add_cap_argument(parser, "the servers' libraries")
    args = parser.parse_args()
    apply_cap(args, "bench.keys")
    args.out = args.out or REPORTS_DIR / f"keys{isa_suffix()}.json"
    limits = measure_limits(args.rate, args.seconds)
    print(f"limits: {limits}")
    cost = measure_cost(args.data, args.keys, args.requests)
    print(f"cost: {cost}")
    audit = measure_audit(args.requests)
    print(f"audit: {audit}")
    write_report(args.out, {"command": "python -m bench.keys", "limits": limits, "cost": cost, "audit": audit})


if __name__ == "__main__":
    main()
