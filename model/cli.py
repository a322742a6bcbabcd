"""`facever` command line: one entry point for serving and for every model task.

    facever serve [--host H] [--port P] [--workers N]
    facever train | evaluate | calibrate | calibrate-subjects | calibrate-quality | calibrate-search | calibrate-grouping | fuse | quantize [options]
    facever group FOLDER [options]
    facever convert-dlib | convert-sface | convert-yunet | fetch-mtcnn [options]
    facever keys create | list | revoke;  facever audit verify | export;  facever templates status | rotate;  facever retention sweep
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> the module whose main(argv) runs it, or module:function
TASKS = {
    "keys": "app.admin:keys_main",
    "audit": "app.admin:audit_main",
    "templates": "app.admin:templates_main",
    "retention": "app.admin:retention_main",
    "evaluate": "model.evaluation.evaluate",
    "calibrate": "model.evaluation.calibrate",
    "calibrate-subjects": "model.evaluation.subject_calibration",
    "calibrate-quality": "model.evaluation.quality",
    "calibrate-search": "model.evaluation.search_calibration",
    "calibrate-grouping": "model.evaluation.grouping_calibration",
    "group": "model.folder_grouping",
    "train": "model.training.trainer",
    "convert-dlib": "model.convert.dlib",
    "convert-sface": "model.convert.sface",
    "convert-yunet": "model.convert.yunet",
    "fetch-mtcnn": "model.convert.mtcnn",
    "fuse": "model.convert.fuse",
    "quantize": "model.convert.quantize",
}


def serve(argv: list[str]) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="facever serve", description="Serve the HTTP API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes; each loads the encoder")
    args = parser.parse_args(argv)
    uvicorn.run(
        "app.main:app", host=args.host, port=args.port, workers=args.workers, access_log=False
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = ["serve", *TASKS]
    if not argv or argv[0] not in commands:
        print(f"usage: facever {{{','.join(commands)}}} [options]\n\n{__doc__}", file=sys.stderr)
        raise SystemExit(2)
    command, rest = argv[0], argv[1:]
    if command == "serve":
        serve(rest)
    else:
        module, _, function = TASKS[command].partition(":")
        getattr(importlib.import_module(module), function or "main")(rest)


if __name__ == "__main__":
    main()
