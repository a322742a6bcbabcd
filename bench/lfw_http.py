"""LFW View 2 through the HTTP API, as a client of the service sees it: every image of the 6,000
pairs embedded by POST /embed of `facever serve` with its default settings (16 images a request),
the distances computed from the returned embeddings, scored as View 2 is (10-fold accuracy, the
threshold chosen on the other nine folds; AUC; TAR at FAR 1e-3 over all pairs).

Once with no face_policy (the service's default), then once with each policy asked for in the
request. Where a policy refuses an image (reject, on an image with several faces) its pairs are
left out and counted: the accuracy is over the pairs answered.

    python -m bench.lfw_http [--policies largest central reject] [--weights weights/X] [--cap avx2]
                             [--size 2048x1536]

With --size every photo is first enlarged into a frame of that size (model.evaluation.photo_mix.upscaled,
its height filled, centred), as a phone or a webcam would send it, and only the default policy runs;
the report is lfw_http_<size>[_<cap>].json. With --weights (FACEVER_WEIGHTS_DIR) the report goes to bench/results/<card>/lfw_http[_<cap>].json.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from bench.machine import parse_server_bench, server_bench_parser, write_report
from bench.server import running_server, server_environment
from bench.peer_speed import parse_size
from model.distance import pair_distances
from model.evaluation.photo_mix import upscaled
from model.evaluation.protocols import read_pairs, score_view2
from model.types import SELECTION_POLICIES

BATCH = 16  # the service's default FACEVER_MAX_EMBED_IMAGES


def embed_all(client: httpx.Client, images: Path, paths: list[str], policy: str | None,
              size: tuple[int, int] | None = None) -> dict[str, np.ndarray | str]:
    """Path -> embedding, or the error code the service refused it with. A refused batch is sent
    again image by image, so one refused image costs only its own pairs."""
    params = {"face_policy": policy} if policy else {}
    found: dict[str, np.ndarray | str] = {}

    def photo(path: str) -> bytes:
        return (images / path).read_bytes() if size is None else upscaled(images / path, size)

    def post(batch: list[str]) -> httpx.Response:
        files = [("images", (path, photo(path), "image/jpeg")) for path in batch]
        return client.post("/embed", files=files, params=params)

    for start in range(0, len(paths), BATCH):
        batch = paths[start : start + BATCH]
        response = post(batch)
        if response.status_code == 200:
            found.update(zip(batch, (np.array(item["embedding"]) for item in response.json()["embeddings"])))
            continue
        for path in batch:
            single = post([path])
            found[path] = (np.array(single.json()["embeddings"][0]["embedding"]) if single.status_code == 200
                           else single.json()["error"]["code"])
    return found


def score(pairs: list, embedded: dict[str, np.ndarray | str]) -> dict:
    answered = [p for p in pairs if not isinstance(embedded[p.first], str) and not isinstance(embedded[p.second], str)]
    codes = [value for value in embedded.values() if isinstance(value, str)]
    refused = {code: codes.count(code) for code in sorted(set(codes))}
    distances = pair_distances(np.stack([embedded[p.first] for p in answered]),
                               np.stack([embedded[p.second] for p in answered]))
    scores = score_view2(distances, np.array([p.same for p in answered]), np.array([p.fold for p in answered]))
    return {
        "accuracy_mean": round(scores["accuracy_mean"], 5),
        "accuracy_std": round(scores["accuracy_std"], 5),
        "auc": round(scores["auc"], 5),
        "tar_at_far_1e-3": round(scores["tar_at_far_1e-3"], 5),
        "pairs_answered": len(answered),
        "images_refused": refused,
    }


def main() -> None:
    parser = server_bench_parser(__doc__, "lfw_http")
    parser.add_argument("--policies", nargs="*", default=[p for p in SELECTION_POLICIES if p != "subject"],
                        help="policies to ask for after the default run (default: every other one)")
    parser.add_argument("--weights", type=Path, help="FACEVER_WEIGHTS_DIR (default: the service's)")
    parser.add_argument("--size", type=parse_size, help="enlarge every photo into a frame WIDTHxHEIGHT first")
    args = parse_server_bench(parser, "bench.lfw_http")
    if args.size:
        args.policies = []
        args.output = args.output.with_name(args.output.name.replace("lfw_http", f"lfw_http_{args.size[0]}x{args.size[1]}"))
    lfw = args.data / "lfw"
    pairs = read_pairs(lfw / "pairs.txt")
    paths = sorted({p.first for p in pairs} | {p.second for p in pairs})
    env = {"FACEVER_LOG_LEVEL": "WARNING", "FACEVER_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024)}
    if args.weights:
        env["FACEVER_WEIGHTS_DIR"] = str(args.weights.resolve())
    runs: dict[str, dict] = {}
    with running_server(env) as server, httpx.Client(base_url=server.base_url, timeout=120) as client:
        info = client.get("/info").json()
        for policy in [None, *args.policies]:
            name = policy or f"default ({info['service']['face_policy']})"
            runs[name] = score(pairs, embed_all(client, lfw / "images", paths, policy, args.size))
            run = runs[name]
            print(f"{name:<20} {run['accuracy_mean']:.2%} ± {run['accuracy_std']:.2%}  AUC {run['auc']:.4f}  "
                  f"TAR@FAR1e-3 {run['tar_at_far_1e-3']:.2%}  pairs {run['pairs_answered']}  refused {run['images_refused']}")
    report = {
        "what": "LFW View 2 (6,000 pairs, 10 folds) through POST /embed of facever serve, default settings"
                + (f", every photo enlarged into a {args.size[0]}x{args.size[1]} frame" if args.size else ""),
        "model": info["model"]["name"],
        "engine": info["service"]["engine"],
        "precision": info["service"]["precision"],
        "detector": info["service"]["detector"],
        "runs": runs,
        "command": "python -m bench.lfw_http" + (f" --weights {args.weights}" if args.weights else "")
                   + (f" --size {args.size[0]}x{args.size[1]}" if args.size else ""),
        "server_environment": server_environment(env),
    }
    write_report(args.output, report)


if __name__ == "__main__":
    main()
