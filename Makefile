# The two commands of the README. Both install what is missing first (as root on Debian 12).
PY := .venv/bin/python
HOTLINE := .venv/bin/hotline

.PHONY: run test stop bootstrap lint bench-speech

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	$(HOTLINE) db seed-demo
	$(HOTLINE) up

stop:
	@if [ -x $(HOTLINE) ]; then $(HOTLINE) down; $(HOTLINE) cluster down; else echo "nothing to stop"; fi

# The cluster on this machine (issue 16): Redis, PostgreSQL, Kamailio, two media nodes, the
# queue node and its standby, the role processes of var/cluster/cluster.json, each on its own
# 127.0.0.x; `make stop` stops it.
.PHONY: run-cluster bench-cluster
run-cluster: bootstrap
	$(HOTLINE) cluster up --seed-demo

# 40 calls through the cluster's edge (every 4th keys a case number), then 5 pops on the second
# web node: per part CPU and memory, Redis commands and PostgreSQL writes per call, IVR connect,
# keyed turn and pop delays (~3.5 min, bounded at 300 s per phase).
bench-cluster: bootstrap
	set -a; [ ! -f var/pg-test.env ] || . var/pg-test.env; set +a; \
	$(PY) -m bench.cluster --calls 40 --concurrency 8 --max-seconds 300 --pop-calls 5

lint: bootstrap
	.venv/bin/ruff check .

test: bootstrap
	@bash scripts/postgres-test.sh
	.venv/bin/ruff check .
	set -a; . var/pg-test.env; set +a; PY=$(PY) bash scripts/run-tests.sh $(PYTEST_ARGS)

# Speech turn latency, streaming vs record-then-recognize, 1-20 concurrent calls (~3-4 min).
bench-speech: bootstrap
	$(PY) -m bench.speech_turns --calls 1,5,10,20 --turns 3 --max-seconds 300

# Screen pop delay, AgentCalled -> pop shown in Chromium, 200 calls 5 at a time (~4-5 min).
.PHONY: bench-pops
bench-pops: bootstrap
	$(PY) -m bench.pop_delay --calls 200 --concurrency 5 --max-seconds 480

# Load: own Asterisk + hotline serve, SIPp callers and agent phones, concurrency 10-80,
# reports the highest concurrency that holds (~7-8 min, bounded at 10); then a cold start:
# 80 calls on a fresh service with nothing warmed up (~2 min).
.PHONY: bench-load
bench-load: bootstrap
	$(PY) -m bench.load --find-max
	$(PY) -m bench.load --find-max --steps 80

# Intake: answer -> queue join and -> status read, silent / keyed / spoken callers, at 1, 20
# and 60 concurrent calls (bounded at 20 min). INTAKE_FLOW=menu runs the old menu's callers.
INTAKE_FLOW ?= intake
.PHONY: bench-intake
bench-intake: bootstrap
	$(PY) -m bench.intake --flow $(INTAKE_FLOW) --calls 1,20,60 --max-seconds 1200

# Refresh requirements-lock.txt (hash-pinned runtime + test dependencies, every platform and
# Python >= 3.11) from pyproject.toml with uv, kept in its own venv under var/.
.PHONY: lock
lock:
	@[ -x var/lock-tools/bin/uv ] || { python3 -m venv var/lock-tools && var/lock-tools/bin/pip install -q 'uv>=0.5'; }
	var/lock-tools/bin/uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
		--generate-hashes --upgrade --custom-compile-command "make lock" -o requirements-lock.txt -q
