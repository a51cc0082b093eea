# virtops.migration: set-up, the lab, the demo and every test.
# `make demo` and `make test` each do all set-up on a fresh Debian 12 machine as root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
LABCTL := lab/labctl
INVENTORY := inventories/lab/hosts.yml
# Control-node packages from Debian, each with its reason in README.md ("What the set-up
# installs"): the lab (debootstrap, nspawn, iproute2/tc, QEMU for the accelerator probe,
# apt-cacher-ng for its package mirror, run by the lab, never as a system service), the
# guest image (busybox, gcc for its workload), the virtual environment (libvirt-python
# compiles against libvirt-dev) and the checks (git for ansible-test, shellcheck).
DEB_PACKAGES := debootstrap systemd-container iproute2 openssh-client busybox-static \
	qemu-system-x86 qemu-utils iperf3 gcc libc6-dev pkg-config libvirt-dev \
	python3 python3-dev python3-venv git shellcheck apt-cacher-ng

export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.tmp/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help setup packages venv collection lab-up lab-down lab-status demo test test-generations test-faults unit sanity lint tarball fresh integration docs bench

help:
	@echo "make demo        set up, bring the lab up, prepare it, start guests and evacuate hv1"
	@echo "make test        set up and run every test (unit, sanity, lint, lab integration, molecule)"
	@echo "make docs        the collection's docsite as HTML (.tmp/docsite/build/html)"
	@echo "make bench       benchmarks (tables; the lab ones need a prepared lab)"
	@echo "make lab-up | lab-down | lab-status"

setup: packages venv collection

# Installs only what is missing, so a second run asks apt nothing.
packages:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements/control-node.txt | packages
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/control-node.txt
	touch $@

# Ansible finds the collection as virtops.migration through a link to this checkout.
collection:
	@mkdir -p .tmp/collections/ansible_collections/virtops
	@ln -sfn $(CURDIR) .tmp/collections/ansible_collections/virtops/migration

# Hypervisor generations per host, e.g. LAB_RELEASES="hv1=debian12 hv2=debian12 hv3=debian13".
LAB_RELEASES ?=
# How many hypervisors (hv1 ... hvN; default 3).
LAB_HOSTS ?=

lab-up: setup
	$(LABCTL) up $(if $(LAB_HOSTS),--hosts $(LAB_HOSTS)) $(if $(LAB_RELEASES),--releases "$(LAB_RELEASES)")

lab-down:
	$(LABCTL) down

lab-status:
	$(LABCTL) status

demo: setup
	lab/demo

test: setup
	tests/run-all

# The mixed-generation suite on a lab with hv3 on Debian 13 (7-8 minutes; not in make test).
test-generations: setup
	tests/run-all generations

# Every case of the fault suite and the post-copy resume (make test runs the suite's
# representative half and only the report of a broken post-copy).
test-faults: setup
	tests/run-all faults

unit: setup
	tests/run-all unit

sanity: setup
	tests/run-all sanity

lint: setup
	tests/run-all lint

# The built tarball, installed as users install it: ansible-test sanity and units on it.
tarball: setup
	tests/run-all tarball

# The README's set-up and the stages above, inside a pristine Debian 12 root (tests/fresh/run).
fresh: packages
	tests/run-all fresh

integration: setup
	tests/run-all integration

# The docsite as HTML (docs/build): .tmp/docsite/build/html/index.html.
docs: packages
	docs/build

# Performance lives here, as tables, never in timed tests (bench/README.md).
bench: setup
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_upgrade.py
	$(BIN)/python bench/bench_plan_task.py
	$(LABCTL) up
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/prepare_hosts.yml
	$(BIN)/python bench/bench_precheck.py
	$(BIN)/python bench/migrate_bench.py
