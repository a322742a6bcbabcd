# CPU-only image of the facever service, weights baked in at build time.
#   docker build -t facever . && docker run -p 8000:8000 facever
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FACEVER_WEIGHTS_DIR=/srv/weights/dlib-resnet-v1 \
    FACEVER_DETECTOR_DIR=/srv/weights/mtcnn \
    FACEVER_WORKERS=1

WORKDIR /srv
# The CPU wheel of torch first (the default index would pull a multi-GB CUDA build).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY app ./app
COPY model ./model
RUN pip install .
COPY weights ./weights

RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin facever
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"
CMD ["sh", "-c", "exec facever serve --host 0.0.0.0 --port 8000 --workers \"$FACEVER_WORKERS\""]
