# CPU-only image of the facever service, weights baked in, running as a non-root user.
#   docker build -t facever . && docker run -p 8000:8000 facever
# Every build step is deploy/build_image.sh, which CI also runs (into a temporary folder) and then
# serves from, so the image is built exactly as tested. Kubernetes manifests: deploy/kubernetes/.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# The pinned dependencies first, in a layer of their own: it changes only when pyproject.toml does.
# The lean serving set (NumPy, Pillow, OpenVINO): no torch, which serving never imports.
COPY deploy/build_image.sh deploy/
COPY pyproject.toml ./
RUN deploy/build_image.sh venv /srv && deploy/build_image.sh dependencies /srv
COPY README.md ./
COPY app app
COPY model model
RUN deploy/build_image.sh app /srv
COPY weights weights
RUN deploy/build_image.sh weights /srv && deploy/build_image.sh check /srv

# The runtime: the built venv and weights, owned by root and read-only to the service's user.
FROM python:3.11-slim

# The service sets its own malloc settings at start-up (app/allocator.py), as under `make serve`.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/srv/venv/bin:$PATH \
    FACEVER_WEIGHTS_DIR=/srv/weights/fused-dlib-sface-yunet-int8 \
    FACEVER_DETECTORS_DIR=/srv/weights \
    FACEVER_STORAGE_URL=sqlite:////var/lib/facever/facever.sqlite3 \
    FACEVER_WORKERS=1

COPY --from=build /srv /srv
# Enrolled subjects (SQLite by default) live in the one folder the service's user may write: mount
# a volume there to keep them, or set FACEVER_STORAGE_URL to PostgreSQL (docs/subjects.md).
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin facever \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/facever
VOLUME ["/var/lib/facever"]
USER 10001
WORKDIR /srv
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
CMD ["sh", "-c", "exec facever serve --host 0.0.0.0 --port 8000 --workers \"$FACEVER_WORKERS\""]
