# make run    set up .venv if needed, then the tour: examples, every runner, recovery after a failure, a short benchmark
# make test   set up .venv if needed, then the whole test suite
# make bench  the direct runner word-count benchmark
# make bench-all   the runner comparison (python -m tidal bench), default workloads and sizes, into bench-out/
# make bench-beam  the same for the workloads with a Beam version, with Beam's DirectRunner as reference
# make matrix regenerate docs/capability_matrix.{json,md,html}

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-all bench-beam beam-venv matrix setup clean chromium redis-server

run: $(STAMP)
	@echo "== word count (examples/wordcount.py) on the direct runner"
	$(PY) -m tidal run examples/wordcount.py --runner direct
	@echo
	@echo "== stock prices per minute (examples/stock_prices.py) on the direct runner"
	$(PY) -m tidal run examples/stock_prices.py --runner direct
	@echo
	@echo "== a Parquet folder averaged per station and minute, written back to Parquet (examples/parquet_windows.py) on the micro-batch runner"
	$(PY) -m tidal run examples/parquet_windows.py --runner microbatch
	@echo
	@echo "== Beam programs ported by replacing apache_beam with tidal, against Beam's own output (examples/beam_port.py)"
	$(PY) examples/beam_port.py
	@echo
	@echo "== one windowed pipeline on every runner (examples/every_runner.py)"
	RAY_AUTH_MODE=disabled $(PY) examples/every_runner.py
	@echo
	@echo "== a Redis stream consumed as it arrives, per-window means written back exactly once (examples/redis_stream.py)"
	$(PY) examples/redis_stream.py
	@echo
	@echo "== a worker killed, then a node lost, mid-stream on a 3-node Ray: recovery from a checkpoint, output exactly once (examples/fault_tolerance.py)"
	RAY_AUTH_MODE=disabled $(PY) examples/fault_tolerance.py
	@echo
	@echo "== a short runner comparison (python -m tidal bench), report in bench-out/"
	RAY_AUTH_MODE=disabled $(PY) -m tidal bench --workloads wordcount,q5,sessions --events 3000 --repeats 1 --out bench-out

test: $(STAMP) chromium redis-server beam-venv
	$(PY) -m pytest -q

# Headless Chromium renders the capability matrix page in its test (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing Debian's chromium for the HTML test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "could not install chromium: its test will be skipped"; }

# The Redis Streams tests start Debian's redis-server themselves (127.0.0.1, a free port, no persistence).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server || \
	  { echo "installing Debian's redis-server for the Redis Streams tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || \
	    echo "could not install redis-server: the Redis tests will be skipped (install it with: apt-get install redis-server)"; }

matrix: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m tidal matrix --out docs

bench: $(STAMP)
	$(PY) benchmarks/direct_wordcount.py

bench-all: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m tidal bench --out bench-out

bench-beam: $(STAMP) beam-venv
	RAY_AUTH_MODE=disabled $(BEAM_VENV)/bin/python -m tidal bench --workloads wordcount,q0,q1,q2,q5,windowed,sessions --out bench-out/beam

# Apache Beam, the benchmark harness's reference runner, lives in a virtualenv of its own:
# it is an optional extra whose pins must not constrain .venv. If it cannot be installed,
# make goes on and the test that compares Beam's results with the runners' is skipped.
BEAM_VENV := .venv-beam
BEAM_STAMP := $(BEAM_VENV)/.installed

beam-venv:
	@$(MAKE) --no-print-directory $(BEAM_STAMP) || \
	  echo "could not install apache-beam into $(BEAM_VENV): the Beam comparison test will be skipped"

$(BEAM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BEAM_VENV)
	$(BEAM_VENV)/bin/python -m pip install -q -e '.[beam]'
	touch $(BEAM_STAMP)

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(BEAM_VENV) build dist *.egg-info
