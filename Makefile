# deepfake-detection: every target installs what it needs into .venv first.
#   make test    the test suite (what CI runs)
#   make demo    the whole pipeline on the embedded synthetic dataset
#   make bench   benchmarks (not part of `make test`); figures go to BENCHMARKS.md
#   make bench-gpu  training throughput on this machine's GPUs (BENCHMARKS.md, docs/training.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,test
DEMO_DIR ?= demo_out
PYTEST_ARGS ?= -n auto

.PHONY: install lint test test-all demo bench bench-gpu chromium clean

# One stamp per set of extras (.installed-cpu-test, .installed-gpu-test, ...), so
# `make install EXTRAS=gpu,test` after `make test` really installs. A switch of extras
# first removes both TensorFlow distributions: tensorflow-cpu and tensorflow[and-cuda]
# must not be installed side by side.
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ls $(VENV)/.installed* 2>/dev/null | grep -qvxF '$@'; then \
		$(PY) -m pip uninstall --quiet --yes tensorflow tensorflow-cpu; \
		rm -f $(VENV)/.installed*; \
	fi
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

# The default suite skips tests marked `slow`; `make test-all` runs them too. Tests marked `gpu`
# run where TensorFlow sees a GPU and are skipped elsewhere (conftest.py).
# -n auto: one pytest-xdist worker per core. Measured 2026-11-27 on the 2-core, 24 GiB build
# machine, fresh clone (`bash .ci/run`): 342 passed in 5 min 32 s of pytest, 7 min 06 s with the
# venv created and installed (an earlier run that day: 6 min 31 s / 8 min 08 s).
# ruff: lint and format check (settings in ruff.toml); `ruff format .` fixes the format.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The demo's knobs: `make demo DEMO_TRAIN_FLAGS="--epochs=1"` etc. (tests/test_demo.py shrinks them all).
DEMO_CONFIG ?= deploy/configs/demo_cpu.cfg
DEMO_SYNTHETIC_FLAGS ?=
DEMO_BUILD_FLAGS ?=
DEMO_TRAIN_FLAGS ?=
DEMO_PREDICT_COUNT ?= 3
# Step 5's photo and video with real faces (preprocessing.demo_media, from scikit-image's photographs):
# DEMO_FACES=0 skips them; DEMO_FACES_FLAGS passes e.g. --max_frames to trainer.predict.
DEMO_FACES ?= 1
DEMO_FACES_FLAGS ?= --max_frames=12
DEMO_TEST_IMAGES = $(DEMO_DIR)/raw -path '*/test/$(1)/*.jpg'

demo: install
	@echo "== [1/7] $$(date +%T) Synthetic faces in the Kaggle layout -> $(DEMO_DIR)/raw"
	$(PY) -m preprocessing.synthetic --output_dir=$(DEMO_DIR)/raw $(DEMO_SYNTHETIC_FLAGS)
	@echo "== [2/7] $$(date +%T) Beam/TFDS build -> $(DEMO_DIR)/data"
	$(PY) -m tfds_builder.build --manual_dir=$(DEMO_DIR)/raw --data_dir=$(DEMO_DIR)/data $(DEMO_BUILD_FLAGS)
	@echo "== [3/7] $$(date +%T) Training ResNet50 from scratch, 2 CPU replicas (MirroredStrategy) -> $(DEMO_DIR)/model"
	rm -rf $(DEMO_DIR)/model
	$(PY) -m trainer.task --flagfile=$(DEMO_CONFIG) --data_dir=$(DEMO_DIR)/data --model_dir=$(DEMO_DIR)/model $(DEMO_TRAIN_FLAGS)
	@echo "== [4/7] $$(date +%T) Evaluation: threshold at the validation EER, report on test"
	$(PY) -m trainer.evaluate --model_dir=$(DEMO_DIR)/model --data_dir=$(DEMO_DIR)/data --threshold=eer \
		--write_threshold > $(DEMO_DIR)/model/evaluation.txt
	@echo "== [5/7] $$(date +%T) Predictions with Grad-CAM on $(DEMO_PREDICT_COUNT) real and $(DEMO_PREDICT_COUNT) fake test images"
	$(PY) -m trainer.predict --export_dir=$(DEMO_DIR)/model/export --output=$(DEMO_DIR)/predictions/predictions.csv \
		--explain --explain_dir=$(DEMO_DIR)/predictions/explanations \
		$$(find $(call DEMO_TEST_IMAGES,real) | sort | head -n $(DEMO_PREDICT_COUNT)) \
		$$(find $(call DEMO_TEST_IMAGES,fake) | sort | head -n $(DEMO_PREDICT_COUNT))
ifeq ($(DEMO_FACES),1)
	@echo "== [6/7] $$(date +%T) Faces: a composite photo and a generated video (faces found, aligned, tracked)"
	$(PY) -m preprocessing.demo_media --output_dir=$(DEMO_DIR)/media
	$(PY) -m trainer.predict --export_dir=$(DEMO_DIR)/model/export --output=$(DEMO_DIR)/predictions/faces/faces.jsonl \
		--annotate --media_dir=$(DEMO_DIR)/predictions/faces \
		--explain --explain_dir=$(DEMO_DIR)/predictions/faces/explanations $(DEMO_FACES_FLAGS) \
		$(DEMO_DIR)/media/group_photo.jpg $(DEMO_DIR)/media/walk.mp4
endif
	@echo "== [7/7] $$(date +%T) Done. Test-split figures from this run:"
	@$(PY) -m trainer.report --report_dir=$(DEMO_DIR)/model/report
	@echo "predictions:    $(DEMO_DIR)/predictions/predictions.csv"
	@echo "Grad-CAM:       $(DEMO_DIR)/predictions/explanations/"
ifeq ($(DEMO_FACES),1)
	@echo "faces:          $(DEMO_DIR)/predictions/faces/ (group_photo.annotated.png, walk.timeline.png, walk.video.json, faces.jsonl)"
endif
	@echo "serve it:       $(VENV)/bin/dfd-serve --export_dir=$(DEMO_DIR)/model/export   # then open http://127.0.0.1:8501/ (docs/serving.md)"

# tf-keras is installed without its dependencies: it pins the full `tensorflow`
# distribution, which would land beside tensorflow-cpu.
bench: install
	$(PY) -m pip install --quiet --no-deps "tf-keras>=2.21,<2.22"
	$(PY) tests/benchmarks/run_all.py

# Training throughput on this machine's GPUs (run unchanged on 1 or 8 GPUs; on a GPU
# machine install with `make install EXTRAS=gpu,test` first). Narrow the grid with e.g.
#   make bench-gpu BENCH_GPU_FLAGS="--precisions=mixed_float16 --jit_compile=on"
BENCH_GPU_FLAGS ?=
bench-gpu: install
	$(PY) tests/benchmarks/bench_gpu.py --output_dir=bench_out/bench_gpu $(BENCH_GPU_FLAGS)

# The serving page's browser test (tests/trainer/serving/test_page.py) drives Debian's Chromium
# through Playwright for Python; `playwright install` (a download) is never used. Idempotent.
chromium:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y --no-install-recommends chromium; }

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info .pytest_cache
