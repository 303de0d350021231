# Two commands on a fresh Debian 12 machine, as root:
#   make demo   installs what is missing, brings the lab up and runs the window against it
#   make test   lint, type checks, syntax checks, unit, integration and molecule tests
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= /usr/bin/python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
APT_PACKAGES := podman runc debootstrap uidmap
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_HOME := $(CURDIR)/.ansible
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
export MW_REPO_DIR := $(CURDIR)

# Ordered stages of `make test`; each is also a target of its own.
STAGES := lint-yaml lint-ansible lint-python typecheck syntax unit lab-fresh integration molecule lab-cycle

.PHONY: help deps venv demo bench lab lab-fresh lab-down test $(STAGES)

help:
	@echo "make demo   bring the lab up and run the maintenance window against it"
	@echo "make test   run every check: $(STAGES)"
	@echo "make bench  measure renames, host scaling and the whole window; print the figures"
	@echo "make lab / make lab-down   start or remove the built-in lab only"

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  [ "$$(id -u)" = 0 ] || { echo "error: root is needed to apt-get install$$missing" >&2; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@test -x $(PYTHON) || { echo "error: $(PYTHON) not found; install python3 and python3-venv" >&2; exit 1; }

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lab: deps venv
	$(BIN)/mwctl lab up

lab-down: venv
	$(BIN)/mwctl lab down

# The demo and the tests start from a freshly seeded lab, whatever an earlier window
# (or another world) left in it; the image is kept, so this takes a few minutes.
demo: lab-fresh
	$(BIN)/mwctl run -q

# Figures, not pass/fail: rename throughput against the loops ops would write, host
# scaling, and the window phase by phase. It ends with the lab rolled back to its seed.
bench: deps venv $(VENV)/.bench-installed
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

lab-fresh: deps venv
	$(BIN)/mwctl lab down -q
	$(BIN)/mwctl lab up -q

test: deps venv
	@mkdir -p .cache; : > .cache/stage-times; failed=0; \
	for stage in $(STAGES); do \
	  start=$$(date +%s); \
	  if $(MAKE) --no-print-directory $$stage; then result=passed; else result=FAILED; failed=1; fi; \
	  printf '%-14s %-7s %5ss\n' $$stage $$result $$(( $$(date +%s) - start )) >> .cache/stage-times; \
	done; \
	echo; echo "stage          result   time"; cat .cache/stage-times; exit $$failed

lint-yaml: venv
	$(BIN)/yamllint --strict .

lint-ansible: venv
	$(BIN)/ansible-lint --profile production

lint-python: venv
	$(BIN)/ruff check src tests roles plugins benchmarks
	$(BIN)/ruff format --check src tests roles plugins benchmarks

typecheck: venv
	$(BIN)/mypy src benchmarks

syntax: venv
	@for pb in maintenance.yml rollback.yml playbooks/*.yml playbooks/lab/*.yml; do \
	  [ -f "$$pb" ] || continue; \
	  $(BIN)/ansible-playbook --syntax-check -i inventory/lab/hosts.yml "$$pb" >/dev/null || { echo "syntax error in $$pb" >&2; exit 1; }; \
	  echo "syntax ok: $$pb"; \
	done

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

lab-cycle: venv
	$(BIN)/pytest tests/lab_cycle

# Scenarios run MOLECULE_JOBS at a time (each names its containers and network after
# itself); each writes .cache/molecule/<dir>.log, and a failing one prints its tail.
MOLECULE_JOBS ?= 2
molecule: venv
	@mkdir -p .cache/molecule; dirs=""; \
	for dir in . roles/*; do [ -d "$$dir/molecule" ] && dirs="$$dirs $$dir"; done; \
	[ -n "$$dirs" ] || { echo "error: no molecule scenario found" >&2; exit 1; }; \
	printf '%s\n' $$dirs | xargs -P $(MOLECULE_JOBS) -I{} sh -c ' \
	  name=$$(basename "$$(cd {} && pwd)"); log=$(CURDIR)/.cache/molecule/$$name.log; start=$$(date +%s); \
	  if (cd {} && $(BIN)/molecule test --all) >"$$log" 2>&1; then \
	    echo "molecule $$name: passed in $$(( $$(date +%s) - start ))s"; \
	  else \
	    echo "molecule $$name: FAILED in $$(( $$(date +%s) - start ))s; the end of $$log:"; tail -n 80 "$$log"; exit 1; \
	  fi'
