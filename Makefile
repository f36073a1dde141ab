# dosod: the two set-up commands are `make run` and `make test`; everything else is their plumbing.
SHELL := /bin/bash
# A failing command in a pipeline (`dosod eval … | head`) fails its recipe line.
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CARGO ?= cargo
ORT_VERSION := 1.32.0
STAMP_VENV := $(VENV)/.stamp-requirements
STAMP_BUNDLES := models/generated/.stamp
STAMP_ENCODERS := models/encoders/.stamp
BIN := target/release/dosod

# The ONNX Runtime shared library shipped inside the onnxruntime wheel in .venv.
ORT_LIB = $(shell ls $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION) 2>/dev/null | head -n1)
export DOSOD_ORT_LIB = $(abspath $(ORT_LIB))

.PHONY: deploy-deps deploy-venv test-scaleout test-container emoji-font run test setup test-venv venv bundles encoders build build-deps lint bench bench-ros2 criterion web-deps stream-deps eval-demo test-opencv clean-generated fuzz openvino-lib int8-bundles bench-precision

# The main job: the HTTP API and web page on the default bundle (http://127.0.0.1:8080/).
run: setup build
	$(BIN) serve

test: setup build web-deps stream-deps test-venv openvino-lib deploy-deps deploy-venv
	$(VPY) -m dosod_tools.textenc.build_clip_tokenizer --out tests/fixtures/clip-tiny/tokenizer.json --check
	$(VPY) -m pytest -q python/tests
	$(CARGO) test --release --all-targets
	$(MAKE) test-scaleout test-container
	$(MAKE) lint

setup: venv bundles encoders

# The test-only Python packages (schemathesis, pinned) on top of the set-up venv.
STAMP_TEST_VENV := $(VENV)/.stamp-test-requirements
test-venv: $(STAMP_TEST_VENV)
$(STAMP_TEST_VENV): $(STAMP_VENV) python/requirements/test.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check -r python/requirements/test.txt
	touch $@

venv: $(STAMP_VENV)
# The pinned set-up packages, then the tooling itself (python/, editable: `python -m dosod_tools...`).
$(STAMP_VENV): python/requirements/setup.txt python/requirements/setup-nodeps.txt python/pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r python/requirements/setup.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -r python/requirements/setup-nodeps.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -e ./python
	@ls $(VENV)/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION) >/dev/null \
	  || { echo "libonnxruntime.so.$(ORT_VERSION) not found in $(VENV) after installing onnxruntime"; exit 1; }
	touch $@

bundles: $(STAMP_BUNDLES)
$(STAMP_BUNDLES): $(STAMP_VENV) $(wildcard python/dosod_tools/fixtures/make_test_bundles.py python/dosod_tools/fixtures/photos.py python/dosod_tools/bundle/*.py)
	$(VPY) -m dosod_tools.fixtures.make_test_bundles --out models/generated --make-png-fixtures
	touch $@

# The MiniLM sentence encoder, built from the PyPI package's safetensors with onnx (no torch).
encoders: $(STAMP_ENCODERS)
$(STAMP_ENCODERS): $(STAMP_VENV) $(wildcard python/dosod_tools/textenc/*.py)
	$(VPY) -m dosod_tools.textenc.build_text_encoder minilm --out models/encoders/all-MiniLM-L6-v2
	touch $@

# Browser test dependencies: playwright-core (npm, pinned by tests/web/package-lock.json) and
# Debian's Chromium (installed here when missing and we are root; .ci/run installs it too).
web-deps: tests/web/node_modules/.package-lock.json
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "Chromium is missing: apt-get install chromium"; exit 1; }
tests/web/node_modules/.package-lock.json: tests/web/package.json tests/web/package-lock.json
	cd tests/web && npm ci --no-audit --no-fund
	touch $@

# Deployment test dependencies (Debian): redis-server, nginx, docker.io (a daemon is started when
# none answers) and debootstrap.
deploy-deps:
	@bash scripts/deploy_test_deps.sh

# kubernetes-validate and checkov (python/requirements/deploy.txt) in their own .venv-deploy,
# for the manifest checks of python/tests/test_deploy.py.
STAMP_DEPLOY_VENV := .venv-deploy/.stamp-requirements
deploy-venv: $(STAMP_DEPLOY_VENV)
$(STAMP_DEPLOY_VENV): python/requirements/deploy.txt
	test -x .venv-deploy/bin/python || $(PY) -m venv .venv-deploy
	.venv-deploy/bin/python -m pip install --quiet --disable-pip-version-check -r python/requirements/deploy.txt
	touch $@

# Three replicas behind nginx with the Redis vocabulary store, one killed, one rolled, Redis
# restarted, under load (docs/deploy.md); the figures also go to data/scaleout.json.
test-scaleout: setup build deploy-deps
	mkdir -p data
	$(VPY) -m dosod_tools.deploy.scaleout --json data/scaleout.json

# The Dockerfile built on a local Debian base and run: detect, a vocabulary saved as the non-root
# user, SIGTERM within the grace period (docs/deploy.md).
test-container: setup build deploy-deps
	$(VPY) -m dosod_tools.deploy.container

# Stream test dependencies (Debian): ffmpeg, mosquitto, GStreamer's RTSP server.
stream-deps:
	@bash scripts/stream_test_deps.sh

# CMake and NASM for the bundled libjpeg-turbo (scripts/build_deps.sh), then the binary.
build: build-deps
	$(CARGO) build --release

build-deps:
	@bash scripts/build_deps.sh

# Debian's colour emoji font, which the synthetic scenes (dosod_tools.demo.emoji_data) draw with.
emoji-font:
	@test -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq fonts-noto-color-emoji >/dev/null; } \
	  || { echo "apt-get install fonts-noto-color-emoji"; exit 1; }

# The demo model's held-out evaluation (docs/demo-model.md): 2,000 fresh scenes of all 639
# classes (seed 0; needs Debian's fonts-noto-color-emoji), scored three ways. MODEL=models/demo-int8
# scores the INT8 bundle on the same scenes (its JSON files get the bundle's name).
DEMO_HELDOUT := data/demo/heldout
MODEL ?= models/demo
EVAL_TAG = $(if $(filter models/demo,$(MODEL)),,-$(notdir $(MODEL)))
eval-demo: setup build emoji-font
	test -f $(DEMO_HELDOUT)/annotations.json || $(VPY) -m dosod_tools.demo.emoji_data generate --split heldout --count 2000 --seed 0 --out $(DEMO_HELDOUT)
	$(BIN) --model $(MODEL) eval --annotations $(DEMO_HELDOUT)/annotations.json --images $(DEMO_HELDOUT) --where split=seen --json data/demo/eval-seen$(EVAL_TAG).json | head -n 13
	$(BIN) --model $(MODEL) eval --annotations $(DEMO_HELDOUT)/annotations.json --images $(DEMO_HELDOUT) --where split=unseen --json data/demo/eval-unseen$(EVAL_TAG).json | head -n 13
	$(BIN) --model $(MODEL) eval --annotations $(DEMO_HELDOUT)/annotations.json --images $(DEMO_HELDOUT) --group-by split --json data/demo/eval-all$(EVAL_TAG).json | head -n 17

# ONNX Runtime with the OpenVINO execution provider (python/requirements/openvino.txt) in
# .venv-openvino, for `--execution-provider openvino` and its test. Only Linux x86_64 has the
# wheel: elsewhere this says so and the OpenVINO test is skipped.
OPENVINO_LIB := .venv-openvino/onnxruntime/capi/libonnxruntime.so.1.24.1
openvino-lib: $(STAMP_VENV)
	@test -f $(OPENVINO_LIB) || $(VPY) -m pip install --quiet --disable-pip-version-check --no-deps \
	  --target .venv-openvino -r python/requirements/openvino.txt \
	  || echo "onnxruntime-openvino could not be installed here: the OpenVINO test will be skipped"

# INT8 bundles: models/demo-int8 and, for each float32 bundle of models/generated/ that exists,
# NAME-int8 (scripts/make_int8_bundles.sh; docs/acceleration.md).
int8-bundles: setup build emoji-font
	bash scripts/make_int8_bundles.sh

# One table: precisions x execution providers for every bundle there is (docs/benchmarks.md).
bench-precision: setup build openvino-lib
	mkdir -p data
	$(VPY) -m dosod_tools.bench.precision --json data/precision.json

# The OpenCV stream backend (cargo feature `opencv`): Debian's OpenCV and clang, then the
# stream test that reads the clip through VideoCapture.
test-opencv: setup web-deps stream-deps
	@dpkg -s libopencv-dev clang libclang-dev >/dev/null 2>&1 || apt-get install -y -qq libopencv-dev clang libclang-dev >/dev/null
	$(CARGO) test --release --features opencv --test streams the_opencv_backend_reads_a_file

# Clippy on the default build (ROS 2 for Jazzy), without ROS 2, and with ROS 2 for Humble.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) clippy --release --all-targets --no-default-features -- -D warnings
	$(CARGO) clippy --release --all-targets --no-default-features --features ros2-humble -- -D warnings

bench: setup build
	$(BIN) bench --model models/generated/random --image tests/fixtures/images/zidane.jpg

# The ROS 2 node's latency on the demo model, fed by the Cyclone DDS peer (docs/ros2.md).
bench-ros2: setup build
	$(VPY) -m dosod_tools.ros2.bench

# Criterion: decode + letterbox of a 1280x720 JPEG, and post-processing of 8400 x 80 scores.
criterion:
	$(CARGO) bench --bench pipeline

clean-generated:
	rm -rf models/generated models/encoders $(STAMP_VENV)

# Fuzzing (cargo-fuzz on the nightly toolchain; fuzz/README.md): every target for FUZZ_SECONDS,
# on a scratch copy of its corpus (fuzz/corpus/ is only read). Any crash fails. Not in `make test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := decode detect_input vocab_spec vocab_npy manifest ros2_image ros2_cdr config
FUZZ_FLAGS := --codegen-units 16
fuzz:
	cd fuzz && cargo +nightly fuzz build $(FUZZ_FLAGS)
	scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p "$$scratch/$$t" && \
	  (cd fuzz && cargo +nightly fuzz run $(FUZZ_FLAGS) $$t "$$scratch/$$t" corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -print_final_stats=1) || exit 1; \
	done
