# wirecap: `make run` and `make test` install what is missing (Debian packages, the
# virtualenv, the project) and then do their job. Both are idempotent and quiet when
# everything is already there.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# System packages the project runs with (run) and is tested against (test).
# gcc, libc6-dev and python3-dev build the merge's C loops at install (setup.py).
DEB_RUN := libpcap0.8 tcpdump iproute2 nftables curl openssl ca-certificates python3 python3-venv \
	gcc libc6-dev python3-dev
DEB_TEST := tshark chromium influxdb prometheus conntrack
DEB_BENCH := socat wireshark-common

.PHONY: run test check lint typecheck unit bench clean system-deps system-deps-test

run: system-deps $(VENV)/.installed-run
	@scripts/run-proxy

test: system-deps-test $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: system-deps-test $(VENV)/.installed-test
	@scripts/ensure-debian-packages $(DEB_BENCH)
	$(BIN)/python bench/capture.py
	$(BIN)/python bench/proxy.py
	$(BIN)/python bench/analyze.py
	$(BIN)/python bench/merge.py
	$(BIN)/python bench/flows.py
	$(BIN)/python bench/guard.py
	@# bench/session.py compares with capture-packets 0.1.2; --no-deps: its stale
	@# cryptography<37 pin would downgrade the one scapy's TLS layer uses.
	@$(BIN)/pip install -q --no-deps capture-packets==0.1.2
	$(BIN)/python bench/session.py

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find src -name '*.so' -delete

system-deps:
	@scripts/ensure-debian-packages $(DEB_RUN)

system-deps-test: system-deps
	@scripts/ensure-debian-packages $(DEB_TEST)

$(VENV)/.created:
	@$(MAKE) --no-print-directory system-deps
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@touch $@

# Reinstalled when what the install builds changes (the C loops of the merge).
BUILD_INPUTS := pyproject.toml setup.py src/wirecap/core/formats/_native_build.py

$(VENV)/.installed-run: $(BUILD_INPUTS) $(VENV)/.created
	@$(MAKE) --no-print-directory system-deps
	@$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(BUILD_INPUTS) $(VENV)/.created
	@$(MAKE) --no-print-directory system-deps-test
	@$(BIN)/pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed-run
