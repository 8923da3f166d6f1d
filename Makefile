# Set-up and everyday commands. Each target creates the virtualenv it needs.
#   make run [CONFIG=config.yml]  install into .venv and serve (no CONFIG: ./data, 127.0.0.1:5000)
#   make install [PREFIX=/usr/local]  a venv in $(PREFIX)/lib/pyregistry, `registry` in $(PREFIX)/bin
#   make image  the container image, offline: mmdebstrap + buildah (deploy/build-image; IMAGE=name)
#   make test   install everything the tests need (pip, apt, npm) and run the whole suite
#   make bench  run the side-by-side benchmark against the reference registry
#   make mutation [MUTATION_ARGS='auth --jobs 2']  mutation testing of the parsers (tools/mutation.py)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TOOLS  := .tools
AZURITE_VERSION := 3.35.0
AXE_VERSION := 4.14.1
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := docker-registry skopeo umoci podman e2fsprogs \
  swift swift-proxy swift-account swift-container swift-object memcached eatmydata \
  keystone python3-keystonemiddleware \
  chromium chromium-driver \
  pebble nginx mmdebstrap buildah systemd containerd \
  redis-server haproxy
#: services those packages start on install; the tests start their own instances
APT_SERVICES := docker-registry memcached keystone nginx containerd redis-server haproxy
PREFIX ?= /usr/local
EXTRAS ?= fast,redis,s3,gcs,azure,acme
IMAGE  ?= localhost/pyregistry:latest
BUILD_DIR ?= build
PYTEST_ARGS ?=

.PHONY: run install image test deps test-deps apt-deps node-deps bench mutation clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[fast,redis]'
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[fast,redis,s3,gcs,azure,acme,otel,test]'
	touch $@

deps: $(VENV)/.runtime

run: deps
	$(PY) -m registry serve $(CONFIG)

install:
	$(PYTHON) -m venv $(PREFIX)/lib/pyregistry
	$(PREFIX)/lib/pyregistry/bin/pip install -q --upgrade pip
	$(PREFIX)/lib/pyregistry/bin/pip install -q '.[$(EXTRAS)]'
	mkdir -p $(PREFIX)/bin
	ln -sf $(PREFIX)/lib/pyregistry/bin/registry $(PREFIX)/bin/registry
	@echo "installed $(PREFIX)/bin/registry"

# needs root, mmdebstrap and buildah (make apt-deps); IMAGE_ARCHIVE=file.tar also writes an OCI archive
image: | $(VENV)/bin/python
	IMAGE='$(IMAGE)' IMAGE_ARCHIVE='$(IMAGE_ARCHIVE)' BUILD_DIR='$(BUILD_DIR)/image' PIP='$(PIP)' \
	  EXTRAS='$(EXTRAS)' BUILDAH_FLAGS='$(BUILDAH_FLAGS)' deploy/build-image

# Debian packages the tests use as real peers and clients: the reference registry, skopeo, umoci, podman,
# e2fsprogs (chattr: the storage-failure health test), OpenStack Swift (+ memcached for its tempauth,
# eatmydata to skip fsyncs in the test cluster) and Keystone (+ keystonemiddleware for Swift), Chromium
# and its driver (the web UI tests), pebble (an ACME CA), nginx (the reverse-proxy test), mmdebstrap +
# buildah (make image), systemd (systemd-analyze, systemd-socket-activate), redis-server and haproxy
# (the scale-out tests), and Node.js for azurite.
# Installed only when missing.
apt-deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing && \
	  for service in $(APT_SERVICES); do \
	    case " $$missing " in *" $$service "*) \
	      echo "stopping the packaged $$service service (the tests start their own)"; \
	      $(SUDO) systemctl disable --now $$service >/dev/null 2>&1 || \
	      $(SUDO) service $$service stop >/dev/null 2>&1 || true;; \
	    esac; \
	  done; \
	fi

node-deps: apt-deps
	@[ -f $(TOOLS)/azurite/node_modules/azurite/package.json ] || \
	  npm install --silent --no-audit --no-fund --prefix $(TOOLS)/azurite azurite@$(AZURITE_VERSION)
	@# axe-core: the accessibility rules the web UI tests run in Chromium
	@[ -f $(TOOLS)/axe-core/node_modules/axe-core/axe.min.js ] || \
	  npm install --silent --no-audit --no-fund --prefix $(TOOLS)/axe-core axe-core@$(AXE_VERSION)

test-deps: $(VENV)/.test apt-deps node-deps

test: test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: test-deps
	$(PY) -m benchmarks.compare $(BENCH_ARGS)

# mutation testing of the parsers and validators; targets in pyproject.toml [tool.mutation.targets]
# (unit tests only: needs the test venv, no Debian packages)
mutation: $(VENV)/.test
	$(PY) -m tools.mutation $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache
