"""Per image through HTTP, by photo size, beside the OpenCV peer and our own pipeline in process, in one
run: what a client of `facever serve` waits for one photo's embedding, against what the peer takes for
the same photo and what the service's own upload path takes without HTTP.

For each size (LFW's own 250x250, and LFW photos enlarged into larger frames with
model.evaluation.photo_mix.upscaled), photo by photo: POST /embed with the photo (multipart), then the
peer on the same bytes (bench.peer_speed's, detection on a copy of at most 640 px), then the in-process
path (app.services.inference.embed_images on a FaceVerifier of the same card and settings), the server
idle during the last two. Medians after a warm-up; the ratio of ours over the peer, and the time outside
the networks: the client-seen time minus the in-process time. Beside it, the framework's own floor for
such a request (bench.framework_floor: FastAPI under uvicorn reading the upload and answering one
embedding, nothing else), sent the same 250x250 photos. Prints a table and writes
bench/results/http_sizes[_<cap>].json.

    python -m bench.http_sizes [--images 40] [--sizes 1024x768 2048x1536 4032x3024] [--cap avx2]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx

from app.services.inference import FaceOptions, embed_images
from bench.machine import parse_server_bench, server_bench_parser, write_report
from bench.peer_speed import MAX_PIXELS, OpenCVPeer, lfw_paths, parse_size, peer_description
from bench.server import HOST, free_port, running_server, server_environment
from model.evaluation.photo_mix import upscaled
from model.paths import DEFAULT_ENCODER_DIR
from model.verify.pipeline import FaceVerifier

WARM_UP = 5


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


@contextmanager
def framework_floor():
    """bench.framework_floor served by uvicorn on loopback; its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.framework_floor:app", "--host", HOST,
                                "--port", str(port), "--log-level", "warning"])
    base_url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base_url}/docs", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = server_bench_parser(__doc__, "http_sizes")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--sizes", type=parse_size, nargs="*", default=[(1024, 768), (2048, 1536), (4032, 3024)])
    args = parse_server_bench(parser, "bench.http_sizes")
    threads = len(os.sched_getaffinity(0))
    peer = OpenCVPeer(threads)
    ours = FaceVerifier.from_folders(DEFAULT_ENCODER_DIR, engine="openvino", threads=threads)
    ours.warm_up()
    paths = lfw_paths(args.data, args.images)
    env = {"FACEVER_LOG_LEVEL": "WARNING", "FACEVER_MAX_UPLOAD_BYTES": str(32 * 1024 * 1024)}
    by_size = {}
    with running_server(env) as server, httpx.Client(base_url=server.base_url, timeout=120) as client:

        def over_http(data: bytes) -> None:
            response = client.post("/embed", files={"images": ("photo.jpg", data, "image/jpeg")})
            if response.status_code != 200:
                raise RuntimeError(f"/embed answered {response.status_code}: {response.text[:200]}")

        def in_process(data: bytes) -> None:
            embed_images(ours, [data], FaceOptions(None, None), MAX_PIXELS)

        for size in [None, *args.sizes]:
            name = "250x250" if size is None else f"{size[0]}x{size[1]}"
            photos = [path.read_bytes() if size is None else upscaled(path, size) for path in paths]
            times: dict[str, list[float]] = {"http": [], "peer": [], "in_process": []}
            for index, data in enumerate(photos[:WARM_UP] + photos):
                measured = {"http": timed(lambda: over_http(data)), "peer": timed(lambda: peer.embed(data)),
                            "in_process": timed(lambda: in_process(data))}
                if index >= WARM_UP:
                    for key, value in measured.items():
                        times[key].append(value)
            medians = {key: round(statistics.median(values), 2) for key, values in times.items()}
            by_size[name] = {**{f"{key}_median_ms": value for key, value in medians.items()},
                             "http_over_peer": round(medians["http"] / medians["peer"], 3),
                             "http_minus_in_process_ms": round(medians["http"] - medians["in_process"], 2)}
            print(f"{name:>9}: HTTP {medians['http']:.1f} ms, peer {medians['peer']:.1f} ms "
                  f"(ratio {by_size[name]['http_over_peer']:.2f}), in process {medians['in_process']:.1f} ms "
                  f"(HTTP adds {by_size[name]['http_minus_in_process_ms']:.1f} ms)")
        info = client.get("/info").json()
    lfw = [path.read_bytes() for path in paths]
    with framework_floor() as base_url, httpx.Client(base_url=base_url, timeout=60) as floor_client:
        floor_ms = [timed(lambda: floor_client.post("/embed", files={"images": ("photo.jpg", data, "image/jpeg")}))
                    for data in lfw[:WARM_UP] + lfw][WARM_UP:]
    floor = round(statistics.median(floor_ms), 2)
    above = round(by_size["250x250"]["http_minus_in_process_ms"] - floor, 2)
    print(f"the framework's floor for such a request: {floor:.1f} ms; ours adds {above:.1f} ms above it at 250x250")
    write_report(args.output, {
        "what": "one photo per POST /embed (multipart) as a client sees it, beside the OpenCV peer and the "
                "in-process upload path on the same photo, photo by photo, in one run",
        "model": info["model"]["name"], "engine": info["service"]["engine"],
        "precision": info["service"]["precision"], "peer": peer_description(peer), "images": len(paths),
        "by_size": by_size, "framework_floor_ms": floor, "ours_above_framework_floor_ms_at_250": above,
        "server_environment": server_environment(env),
    })


if __name__ == "__main__":
    main()
