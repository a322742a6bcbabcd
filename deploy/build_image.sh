#!/usr/bin/env bash
# The facever runtime, built into PREFIX one step at a time. The Dockerfile runs these same steps
# (one RUN each, so Docker caches the torch layer) and CI runs `all` into a temporary folder and
# serves from it, so the image's build cannot drift from what is tested.
#
#   deploy/build_image.sh STEP PREFIX        STEP: one of STEPS below, or all
#
#   PREFIX/venv      Python virtual environment: CPU-only torch and facever, no test or eval extras
#   PREFIX/weights   the shipped weights (FACEVER_WEIGHTS_DIR, FACEVER_DETECTORS_DIR point here)
#
# PYTHON           interpreter for the venv (default python3)
# TORCH_INDEX_URL  index of the CPU torch wheel (default PyTorch's CPU index, since PyPI's default
#                  torch is a multi-GB CUDA build); empty: pip's own configuration (e.g. find-links)
# RUNTIME_UID      the image's non-root user; `check` imports and warms the model up as this user
#                  when run as root
set -euo pipefail

# In this order, as `all` and the Dockerfile's RUN lines run them (tests/deploy/test_dockerfile.py).
STEPS=(venv torch app weights check)
usage() { echo "usage: $0 {$(IFS='|'; echo "${STEPS[*]}")|all} PREFIX" >&2; exit 2; }
[ $# -eq 2 ] || usage
step=$1
prefix=$2
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
torch_index_url=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
runtime_uid=${RUNTIME_UID:-10001}
pip=("$prefix/venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --quiet)

build_venv() {
    "$python" -m venv "$prefix/venv"
}

install_torch() {
    # The version pinned in pyproject.toml, as the CPU build (local version label +cpu).
    local version
    version=$("$python" -c 'import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print(next(re.fullmatch(r"torch==(\S+)", d).group(1) for d in deps if d.startswith("torch==")))' \
        "$source_dir/pyproject.toml")
    "${pip[@]}" ${torch_index_url:+--index-url "$torch_index_url"} "torch==$version+cpu"
}

install_app() (
    # From a copy of the package sources only, so the build leaves nothing in the source tree.
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    cp -R "$source_dir/pyproject.toml" "$source_dir/README.md" "$source_dir/app" "$source_dir/model" "$stage/"
    "${pip[@]}" "$stage"
)

copy_weights() {
    mkdir -p "$prefix/weights"
    cp -R "$source_dir/weights/." "$prefix/weights/"
}

check() {
    local probe='
import importlib.util, sys, torch
from model.verify.pipeline import FaceVerifier
assert torch.version.cuda is None, "torch is a CUDA build"
assert importlib.util.find_spec("matplotlib") is None, "the eval extra is installed"
import app.main  # the service module imports without the sources beside it
verifier = FaceVerifier.from_folders(sys.argv[1] + "/fused-dlib-sface-yunet-int8", sys.argv[1])
verifier.warm_up()
print("check passed:", verifier.card.name, verifier.card.version, "torch", torch.__version__)'
    local writable
    writable=$(find "$prefix" -perm -o+w ! -type l -print -quit)
    [ -z "$writable" ] || { echo "world-writable: $writable" >&2; exit 1; }
    # From /, so nothing is imported from a source tree, and as the runtime user where possible.
    local as_user=(setpriv --reuid "$runtime_uid" --regid "$runtime_uid" --clear-groups env HOME=/nonexistent)
    if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
        as_user=()
        echo "check: as uid $(id -u) (switching users needs root and setpriv)" >&2
    elif ! (cd / && "${as_user[@]}" test -x "$prefix/venv/bin/python"); then
        as_user=()  # e.g. a base interpreter under /root; in the image it is /usr/local/bin/python3.11
        echo "check: as uid 0, since uid $runtime_uid cannot run this venv's base interpreter" >&2
    fi
    (cd / && PYTHONDONTWRITEBYTECODE=1 "${as_user[@]}" "$prefix/venv/bin/python" -c "$probe" "$prefix/weights")
}

run_step() {
    case $1 in
        venv) build_venv ;;
        torch) install_torch ;;
        app) install_app ;;
        weights) copy_weights ;;
        check) check ;;
        *) usage ;;
    esac
}

if [ "$step" = all ]; then
    for each in "${STEPS[@]}"; do run_step "$each"; done
else
    run_step "$step"
fi
