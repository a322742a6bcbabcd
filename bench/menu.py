"""The card menu: each shipped int8 card beside the OpenCV peer, per CPU kind, from the reports the
benchmarks wrote; a table per CPU kind and one plot of accuracy against per-image time.

    python -m bench.menu

Reads, for each card and for `""` (this CPU) and `_avx2` (held to AVX2, or a real AVX2 CPU):
bench.peer_speed's report (per image, ours and the peer's, in one run), bench.latency's
(`--peer`: /verify p50 at concurrency 1, verifies per second at 4) and bench.lfw_http's (LFW View 2
through the API with defaults: accuracy, TAR at FAR 1e-3). Prints the tables as markdown, writes
bench/results/menu.json and docs/menu.png. The peer's LFW accuracy is the one measured here
(docs/accuracy.md): its pipeline, unlike ours, does not change with the CPU's ISA.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.machine import write_report
from model.paths import DEFAULT_ENCODER_DIR, REPO_ROOT, REPORTS_DIR

CARDS = ("fused-dlib-sface-yunet-int8", "sface-2021dec-yunet-int8", "dlib-resnet-v1-yunet-int8")
CPU_KINDS = {"": "AVX-512 (this EPYC, natively)", "_avx2": "AVX2 (the same EPYC held to AVX2)"}
PEER_LFW_ACCURACY = 0.9938  # OpenCV YuNet + SFace int8 on LFW View 2, docs/accuracy.md
PLOT = REPO_ROOT / "docs" / "menu.png"


def report(card: str, name: str, suffix: str) -> dict:
    """A card's report: the default's at bench/results/<name>.json, another card's where its
    benchmark put it (peer_speed_<card>.json; <card>/<name>.json for the served benchmarks)."""
    default = card == DEFAULT_ENCODER_DIR.name
    if name == "peer_speed":
        path = REPORTS_DIR / f"peer_speed{'' if default else '_' + card}{suffix}.json"
    else:
        path = (REPORTS_DIR if default else REPORTS_DIR / card) / f"{name}{suffix}.json"
    return json.loads(path.read_text())


def row(card: str, suffix: str) -> dict:
    speed, latency, lfw = (report(card, name, suffix) for name in ("peer_speed", "latency", "lfw_http"))
    run = next(iter(lfw["runs"].values()))  # the default face policy's
    return {
        "card": card,
        "per_image_ms": speed["ours"]["median_ms"], "peer_per_image_ms": speed["peer"]["median_ms"],
        "per_image_over_peer": speed["ratio_ours_to_peer"],
        "verify_c1_p50_ms": latency["results"]["verify_c1"]["p50_ms"],
        "verify_c4_per_s": latency["results"]["verify_c4"]["ok_per_s"],
        "lfw_accuracy": run["accuracy_mean"], "lfw_std": run["accuracy_std"], "tar_at_far_1e-3": run["tar_at_far_1e-3"],
        "dates": sorted({r["machine"]["date"][:10] for r in (speed, latency, lfw)}),
    }


def table(rows: list[dict]) -> str:
    lines = ["| card | per image | peer, same run | ratio | /verify p50 (c1) | verifies/s (c4) | LFW View 2, API | TAR @ FAR 1e-3 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['card']} | {r['per_image_ms']:.1f} ms | {r['peer_per_image_ms']:.1f} ms | "
                     f"**{r['per_image_over_peer']:.2f}** | {r['verify_c1_p50_ms']:.1f} ms | {r['verify_c4_per_s']:.1f} | "
                     f"{r['lfw_accuracy']:.2%} ± {r['lfw_std']:.2%} | {r['tar_at_far_1e-3']:.2%} |")
    return "\n".join(lines)


def plot(kinds: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, len(kinds), figsize=(11, 4.2), sharey=True)
    for axis, (suffix, rows) in zip(axes, kinds.items()):
        for r in rows:
            axis.scatter(r["per_image_ms"], r["lfw_accuracy"] * 100, s=60, zorder=3)
            axis.annotate(r["card"].removesuffix("-yunet-int8"), (r["per_image_ms"], r["lfw_accuracy"] * 100),
                          textcoords="offset points", xytext=(6, 4), fontsize=8)
        peer = statistics.median(r["peer_per_image_ms"] for r in rows)
        axis.scatter(peer, PEER_LFW_ACCURACY * 100, marker="s", color="black", s=60, zorder=3)
        axis.annotate("OpenCV YuNet + SFace (peer)", (peer, PEER_LFW_ACCURACY * 100), textcoords="offset points",
                      xytext=(-40, -14), fontsize=8)
        axis.set_title(CPU_KINDS[suffix], fontsize=10)
        axis.set_xlabel("ms per image (detect + align + embed, median; 2 threads)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("LFW View 2 through the API, accuracy %")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    kinds = {suffix: [row(card, suffix) for card in CARDS] for suffix in CPU_KINDS}
    for suffix, rows in kinds.items():
        print(f"\n{CPU_KINDS[suffix]}\n\n{table(rows)}")
    plot(kinds, PLOT)
    print(f"wrote {PLOT.relative_to(REPO_ROOT)}")
    write_report(REPORTS_DIR / "menu.json", {"what": "the shipped int8 cards beside the OpenCV peer, per CPU kind",
                                             "peer_lfw_accuracy": PEER_LFW_ACCURACY,
                                             "cpu_kinds": {CPU_KINDS[s]: rows for s, rows in kinds.items()}})


if __name__ == "__main__":
    main()
