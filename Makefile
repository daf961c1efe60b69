# Every target installs what it needs, so each works on a fresh machine and is idempotent.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
CACHE_DIR ?= $(HOME)/.cache/modelkube
UV_HOME := $(CACHE_DIR)/tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
# The machine's own CPython: uv may not download interpreters here.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= $(shell python3 -c 'import sys; print(sys.executable)')
RUN := $(UV) run --frozen --no-sync
# The Rust core's build outputs survive a fresh clone: a warm build recompiles only our crates.
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/cargo-target
# rustup installs cargo here; a non-login shell may not have it on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO := cargo
NATIVE := --manifest-path native/Cargo.toml
# llama.cpp as vendored by the llama-cpp-python sdist (PyPI): native/llama/build.rs compiles it.
LLAMA_CPP_PYTHON := 0.3.36
export MODELKUBE_LLAMA_CPP_SRC ?= $(CACHE_DIR)/llama.cpp-src-$(LLAMA_CPP_PYTHON)

.PHONY: help install system-deps llama-cpp-src python-deps models controlplane images lint native-test freethreaded \
	freethreaded-test test fuzz demo bench clean

help:
	@echo "make demo   install, then serve builtin://tiny through the openai SDK, and run the"
	@echo "            operator on a local control plane with the example ModelService, fine-tune"
	@echo "            an adapter, teach the real model a task by LoRA (accuracy before and after),"
	@echo "            and proxy a runtime as a hosted provider (keys, DSPy, metrics)"
	@echo "make test   install, then run lint, type checks and the whole test suite"
	@echo "make fuzz   install, then run the generated-input tests with fresh examples, many"
	@echo "            more than make test's fixed ones (FUZZ_EXAMPLES=2000; not part of make test)"
	@echo "make bench  install, then run the benchmarks in bench/ (not part of make test)"
	@echo "make images build the runtime and operator images as OCI archives (root; no registry)"

install: system-deps python-deps models

system-deps:
	@command -v go >/dev/null || { echo "Go is needed to build the test control plane"; exit 1; }
	@command -v $(CARGO) >/dev/null || { echo "Rust (cargo) is needed to build native/"; exit 1; }
	@if ! ls /usr/lib/*-linux-gnu/libopenblas.so.0 >/dev/null 2>&1; then \
	  echo "installing OpenBLAS (MLX's bundled BLAS is ~40x slower)"; \
	  apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && apt-get install -y -q libopenblas0-pthread >/dev/null; }; \
	fi
	@missing=""; for p in containerd:containerd runc:runc conntrack:conntrack iptables:iptables \
	    busybox:busybox-static gcc:gcc mmdebstrap:mmdebstrap gdb:gdb; do \
	  command -v $${p%%:*} >/dev/null || missing="$$missing $${p#*:}"; done; \
	  [ -x /usr/lib/cni/bridge ] || missing="$$missing containernetworking-plugins"; \
	  if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing (the real node of the e2e tier)"; \
	    apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null \
	           && apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	  fi
	@if ! command -v promtool >/dev/null; then \
	  echo "installing Prometheus and promtool (the dashboards and alerts are tested against them)"; \
	  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null \
	         && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; \
	fi

$(UV):
	python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install -q uv==$(UV_VERSION)

llama-cpp-src: $(MODELKUBE_LLAMA_CPP_SRC)/include/llama.h

# pip's own download of the sdist (no binary), unpacked once into the cache.
$(MODELKUBE_LLAMA_CPP_SRC)/include/llama.h: | $(UV)
	rm -rf $(MODELKUBE_LLAMA_CPP_SRC).tmp && mkdir -p $(MODELKUBE_LLAMA_CPP_SRC).tmp
	$(UV) tool run pip download -q --no-deps --no-binary :all: \
	  -d $(MODELKUBE_LLAMA_CPP_SRC).tmp llama-cpp-python==$(LLAMA_CPP_PYTHON)
	tar xzf $(MODELKUBE_LLAMA_CPP_SRC).tmp/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz \
	  -C $(MODELKUBE_LLAMA_CPP_SRC).tmp llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp
	rm -rf $(MODELKUBE_LLAMA_CPP_SRC)
	mv $(MODELKUBE_LLAMA_CPP_SRC).tmp/llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp \
	  $(MODELKUBE_LLAMA_CPP_SRC)
	rm -rf $(MODELKUBE_LLAMA_CPP_SRC).tmp

python-deps: $(UV) llama-cpp-src
	$(UV) sync --frozen --all-packages

models: python-deps
	$(RUN) modelkube models create tiny smollm2-135m-instruct

# etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok and helm, built from their
# Go modules (tests/controlplane/gomod) and cached by version: only the first run pays the build.
controlplane: python-deps
	$(RUN) python -m tests.controlplane.binaries

# The runtime and operator images as OCI archives (tests/node/build_images.py): a Debian root
# filesystem from mmdebstrap plus uv.lock's environment and the Rust core; cached by their inputs.
images: python-deps
	@command -v mmdebstrap >/dev/null || { echo "installing mmdebstrap (the images' Debian root filesystem)"; \
	  apt-get install -y -q mmdebstrap >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && apt-get install -y -q mmdebstrap >/dev/null; }; }
	$(RUN) python -m tests.node.build_images

lint: python-deps
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) python -m mypy.stubtest modelkube_native._native
	$(RUN) lint-imports
	$(CARGO) fmt $(NATIVE) --all --check
	$(CARGO) clippy $(NATIVE) --workspace --all-targets --locked -q -- -D warnings

# The llama crate's batch parity test runs on the real model's GGUF file.
native-test: python-deps
	MODELKUBE_TEST_GGUF="$$($(RUN) python -c 'from modelkube_serving.models.packaged import packaged_gguf; print(packaged_gguf("smollm2-135m-instruct"))')" \
	  $(CARGO) test $(NATIVE) -p modelkube-core -p modelkube-llama --locked -q

# The Rust core on a free-threaded CPython: 3.14t built once from Debian's source package
# (cached under ~/.cache/modelkube/python-<version>t), a cp314t wheel of native/ (cached by a
# hash of its sources) and .venv-ft with the pinned tests/freethreaded/requirements.txt.
freethreaded: python-deps
	$(RUN) python -m tests.freethreaded.environment

# The native tests and the thread tests again, with the GIL off (serving/src for the built-in
# model's tokenizer, made by `make models`, and the proxy-mode app; operator/src for its API).
freethreaded-test: freethreaded models
	PYTHONPATH=serving/src:operator/src .venv-ft/bin/python -m pytest -p no:cacheprovider tests/native \
	  tests/freethreaded

# The slowest tests are listed at the end, so CI's log shows where the suite's time goes.
# Two pytest-xdist workers: the suite waits on processes (a control plane, a real node, pods) for
# much of its time, so a second worker fills the second core; tests/xdist_scopes.py says how.
test: install controlplane lint native-test freethreaded-test
	$(RUN) pytest -n 2 --durations=40

# make test's generated inputs are derandomized, the same every run, so it finds nothing new;
# this explores: every generated-input test with fresh examples (what found session 30's bugs).
FUZZ_EXAMPLES ?= 2000
FUZZ_TESTS := tests/serving/test_fuzz.py tests/serving/test_programs.py \
	tests/gateway/test_gateway_e2e.py tests/operator/test_generated_specs.py \
	tests/operator/test_fine_tuning_api_e2e.py tests/chart/test_values_fuzz.py
fuzz: install controlplane
	MODELKUBE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(RUN) pytest -n 2 -p no:cacheprovider \
	  -k "generated or arbitrary" $(FUZZ_TESTS)

demo: install controlplane
	$(RUN) python examples/demo.py
	PYTHONPATH=. $(RUN) python examples/demo_operator.py
	PYTHONPATH=. $(RUN) python examples/demo_finetune.py
	PYTHONPATH=. $(RUN) python examples/demo_finetune_real.py
	PYTHONPATH=. $(RUN) python examples/demo_proxy.py

# bench.upstream builds the LiteLLM proxy's own venv under ~/.cache/modelkube/bench once.
bench: install controlplane
	@if ! command -v wrk >/dev/null; then \
	  echo "installing wrk (the load generator of bench.upstream)"; \
	  apt-get install -y -q wrk >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; \
	fi
	$(RUN) python -m bench.serving
	$(RUN) python -m bench.native
	$(RUN) python -m bench.structured
	$(RUN) python -m bench.operator
	$(RUN) python -m bench.finetune
	$(RUN) python -m bench.upstream

clean:
	rm -rf .venv .venv-ft .mypy_cache .ruff_cache .pytest_cache bench/results
