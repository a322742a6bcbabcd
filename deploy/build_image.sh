#!/usr/bin/env bash
# The facever runtime, built into PREFIX one step at a time. The Dockerfile runs these same steps
# (one RUN each, so Docker caches the dependencies' layer) and CI runs `all` into a temporary folder
# and serves from it, so the image's build cannot drift from what is tested.
#
#   deploy/build_image.sh STEP PREFIX        STEP: one of STEPS below, or all
#
#   PREFIX/venv      Python virtual environment: facever's lean serving set (NumPy, Pillow,
#                    OpenVINO; no torch, no test or eval extras)
#   PREFIX/weights   the shipped networks that set runs, compiled ahead of time, with their cards
#                    (FACEVER_WEIGHTS_DIR, FACEVER_DETECTORS_DIR point here); torch's .pt state
#                    files stay out, as nothing in the image can read them
#
# PYTHON           interpreter for the venv (default python3)
# RUNTIME_UID      the image's non-root user; `check` imports and warms the model up as this user
#                  when run as root
set -euo pipefail

# In this order, as `all` and the Dockerfile's RUN lines run them (tests/deploy/test_dockerfile.py).
STEPS=(venv dependencies app weights check)
usage() { echo "usage: $0 {$(IFS='|'; echo "${STEPS[*]}")|all} PREFIX" >&2; exit 2; }
[ $# -eq 2 ] || usage
step=$1
prefix=$2
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
runtime_uid=${RUNTIME_UID:-10001}
pip=("$prefix/venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --quiet)

build_venv() {
    "$python" -m venv "$prefix/venv"
}

install_dependencies() {
    # The pinned serving set from pyproject.toml alone, so this layer changes only with the pins.
    local requirements
    requirements=$(mktemp)
    "$python" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$source_dir/pyproject.toml" > "$requirements"
    "${pip[@]}" -r "$requirements"
    rm -f "$requirements"
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
    (cd "$source_dir/weights" && find . -type f ! -name '*.pt' -exec cp --parents {} "$prefix/weights/" \;)
}

check() {
    local probe='
import importlib.util, sys
from model.verify.pipeline import FaceVerifier
for extra in ("torch", "matplotlib", "pytest"):
    assert importlib.util.find_spec(extra) is None, f"{extra} is installed: the image carries the serving set only"
import app.main  # the service module imports without the sources beside it
verifier = FaceVerifier.from_folders(sys.argv[1] + "/fused-dlib-sface-yunet-int8", sys.argv[1])
verifier.warm_up()
print("check passed:", verifier.card.name, verifier.card.version, "engine", verifier.engine)'
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
        dependencies) install_dependencies ;;
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
