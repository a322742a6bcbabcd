"""The server's resident memory in the states a deployment is sized from.

Starts `facever serve` (as bench/latency.py does) and reads its
VmRSS / VmHWM from /proc: once ready; after 50 /verify of distinct LFW pairs; after 20 /embed of 16
images; and the peak with two concurrent /verify of two 40-megapixel photos each, the largest that
FACEVER_MAX_IMAGE_PIXELS admits by default, run at FACEVER_MAX_CONCURRENCY=2 so that they overlap:
first an LFW photo upscaled to 7,300 x 5,475 (a large face: detection's reduced decode is all it
takes), then the same photo at 625 x 625 in a plain frame of that size (a face small enough to be
aligned from its region decoded in full, the most a photo can cost). Prints
a table and writes bench/results/memory.json; deploy/kubernetes/deployment.yaml is sized from it.

    python -m bench.memory
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from bench.machine import parse_server_bench, server_bench_parser, write_report
from bench.server import memory_mib, running_server, server_environment
from model.evaluation.protocols import read_pairs

LARGE_SIZE = (7300, 5475)  # 39.97 megapixels


def large_photo(path: Path) -> bytes:
    """An LFW photo upscaled to LARGE_SIZE: a real face, at the largest size the server decodes."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").resize(LARGE_SIZE, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def small_face_photo(path: Path) -> bytes:
    """An LFW photo at 625 x 625 (its face about 275 pixels) in a plain LARGE_SIZE frame."""
    frame = Image.new("RGB", LARGE_SIZE, (118, 124, 131))
    frame.paste(Image.open(path).convert("RGB").resize((625, 625), Image.Resampling.BILINEAR), (4000, 2000))
    buffer = io.BytesIO()
    frame.save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def main() -> None:
    args = parse_server_bench(server_bench_parser(__doc__, "memory"), "bench.memory")
    images = args.data / "lfw" / "images"
    pairs = read_pairs(args.data / "lfw" / "pairs.txt")[:50]
    large = [large_photo(images / pairs[0].first), large_photo(images / pairs[0].second)]
    small_faces = [small_face_photo(images / pairs[0].first), small_face_photo(images / pairs[0].second)]

    # Two inferences at once, so the two large verifies overlap: the worst case a deployment that
    # raises FACEVER_MAX_CONCURRENCY (default 1) to 2 can meet.
    env = {"FACEVER_LOG_LEVEL": "WARNING", "FACEVER_MAX_UPLOAD_BYTES": str(32 * 1024 * 1024),
           "FACEVER_MAX_CONCURRENCY": "2"}
    rows: dict[str, float] = {}
    with running_server(env) as server, httpx.Client(base_url=server.base_url, timeout=120) as client:

        def verify(first: bytes, second: bytes) -> int:
            return client.post("/verify", files={"image1": first, "image2": second}).status_code

        rows["ready"] = memory_mib(server.pid)
        codes = [verify((images / p.first).read_bytes(), (images / p.second).read_bytes()) for p in pairs]
        rows["after 50 /verify (distinct LFW pairs)"] = memory_mib(server.pid)
        batch = [("images", (images / p.first).read_bytes()) for p in pairs[:16]]
        codes += [client.post("/embed", files=batch).status_code for _ in range(20)]
        rows["after 20 /embed of 16 images"] = memory_mib(server.pid)
        rows["peak so far"] = memory_mib(server.pid, "VmHWM")
        with ThreadPoolExecutor(2) as pool:
            codes += list(pool.map(lambda _: verify(*large), range(2)))
        rows["peak, two concurrent /verify of two 40 MP photos each"] = memory_mib(server.pid, "VmHWM")
        rows["after them"] = memory_mib(server.pid)
        with ThreadPoolExecutor(2) as pool:
            codes += list(pool.map(lambda _: verify(*small_faces), range(2)))
        rows["peak, the same with small faces (their regions decoded in full)"] = memory_mib(server.pid, "VmHWM")
        rows["after those"] = memory_mib(server.pid)
        info = client.get("/info").json()

    report = {
        "what": "VmRSS (VmHWM for peaks) of facever serve, MiB",
        "model": info["model"]["name"],
        "precision": info["service"]["precision"],
        "engine": info["service"]["engine"],
        "rss_mib": {name: round(value, 1) for name, value in rows.items()},
        "answers": sorted(set(codes)),
        "server_environment": server_environment(env),
    }
    print(f"{report['model']} ({report['engine']}, {report['precision']}); answers {report['answers']}")
    for name, value in report["rss_mib"].items():
        print(f"{name:<56} {value:>8.1f} MiB")
    write_report(args.output, report)


if __name__ == "__main__":
    main()
