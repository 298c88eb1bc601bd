# make test: install what is missing (Vulkan loader + Mesa's lavapipe), then run every test.
# make demo: the main job on this machine: `lim info` and the matmul benchmark.

SHELL := /bin/bash
export XDG_RUNTIME_DIR ?= /tmp
CARGO ?= cargo

# lavapipe's ICD file and the Vulkan loader; both come from Debian/Ubuntu packages.
LAVAPIPE_ICD := $(firstword $(wildcard /usr/share/vulkan/icd.d/lvp_icd.*.json))
VULKAN_LOADER := $(shell ldconfig -p 2>/dev/null | grep -m1 -o 'libvulkan\.so\.1')
APT_PACKAGES := mesa-vulkan-drivers libvulkan1

.PHONY: test demo deps

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

test: deps
	$(CARGO) test --all-targets
	$(CARGO) test --doc

demo: deps
	$(CARGO) run --release -- info
	$(CARGO) run --release -- bench matmul --sizes 256,512,1024
