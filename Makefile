# Set-up commands that work on a fresh machine (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint localnet rehearsal lab-deps bench-tps bench-crash bench-24 clean

# System packages the lab and its tests use: the real Prometheus, Alertmanager and sshd; nginx-light is the
# netns lab's API proxy (playbooks/roles/api_proxy); chromium is the browser of the dashboard's tests.
LAB_PACKAGES := prometheus prometheus-alertmanager openssh-server iproute2 nginx-light chromium

$(STAMP): pyproject.toml node/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# PYTHONWARNINGS: setuptools' "Editable installation" notice, printed once per package, says nothing to act on
	PYTHONWARNINGS=ignore $(BIN)/pip install -q -e node/ -e '.[dev]'
	touch $(STAMP)

## install the lab's system packages when missing (as root), or say what to run
lab-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "the lab needs:$$missing -- run: sudo apt-get install$$missing"; \
	    echo "(tests that need them are skipped until then)"; \
	  fi; \
	fi

## the whole suite: lint, types, unit and integration tests (slow ones included)
test: $(STAMP) lab-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

## unit tests only: no process, no server, no network (tests/unit_tier.py enforces it); under a minute
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

## ruff, mypy, and ansible-lint on playbooks/ at the production profile (.ansible-lint)
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/ansible-lint playbooks/

## the six drills on a local 4-delegate lab under load: a summary table and a report (exit 1 if a drill failed)
rehearsal: $(STAMP) lab-deps
	$(BIN)/iotex-ops rehearsal

## start a local 4-delegate network and watch it finalize blocks
localnet: $(STAMP)
	$(BIN)/iotex-ops localnet --delegates 4 --seconds 30

bench-tps: $(STAMP)
	$(BIN)/python bench/tps.py

bench-crash: $(STAMP)
	$(BIN)/python bench/crash_consistency.py

bench-24: $(STAMP)
	$(BIN)/python bench/delegates24.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
