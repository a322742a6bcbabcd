# One way to do each thing. Every target sets up .venv on first use (idempotent): `serve` with the
# lean serving set, every other target with everything (torch, test, eval and train extras).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The lean serving set only (no torch): what `make serve` needs on a fresh machine, and the image carries.
SERVE_STAMP := $(VENV)/.serve-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install serve test evaluate calibrate calibrate-subjects calibrate-quality calibrate-search calibrate-grouping bench convert-dlib convert-sface convert-yunet fetch-mtcnn quantize clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[torch,test,eval]'
	touch $(STAMP)

$(SERVE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/facever serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest

evaluate: $(STAMP)
	$(BIN)/facever evaluate

calibrate: $(STAMP)
	$(BIN)/facever calibrate

calibrate-subjects: $(STAMP)
	$(BIN)/facever calibrate-subjects

calibrate-quality: $(STAMP)
	$(BIN)/facever calibrate-quality

calibrate-search: $(STAMP)
	$(BIN)/facever calibrate-search

calibrate-grouping: $(STAMP)
	$(BIN)/facever calibrate-grouping

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench.peer_speed
	$(BIN)/python -m bench.peer_speed --cap avx2
	$(BIN)/python -m bench.encoder_speed
	$(BIN)/python -m bench.detect_speed
	$(BIN)/python -m bench.detect_speed --detector yunet
	$(BIN)/python -m bench.pipeline_speed
	$(BIN)/python -m bench.latency --peer
	$(BIN)/python -m bench.latency --peer --cap avx2
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.photo_memory
	$(BIN)/python -m bench.http_sizes
	$(BIN)/facever evaluate

convert-dlib: $(STAMP)
	$(BIN)/facever convert-dlib

convert-sface: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[convert]'
	$(BIN)/facever convert-sface

convert-yunet: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[convert]'
	$(BIN)/facever convert-yunet

fetch-mtcnn: $(STAMP)
	$(BIN)/facever fetch-mtcnn

quantize: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[convert]'
	$(BIN)/facever quantize --weights weights/fused-dlib-sface-yunet --name fused-dlib-sface-yunet-int8

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
