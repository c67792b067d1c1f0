# make run    set up .venv if needed, then the tour: examples, every runner, recovery after a failure, a short benchmark
# make test   set up .venv if needed, then the whole test suite
# make bench  the direct runner word-count benchmark
# make bench-all   the runner comparison (python -m tidal bench), default workloads and sizes, into bench-out/
# make bench-beam  the same for the workloads with a Beam version, with Beam's DirectRunner as reference
# make bench-peers install Apache Flink and Apache Spark (each in a virtualenv of its own), then compare them with tidal
# make bench-report     every study (runners, other engines when installed, key scaling, latency sweep) and bench-out/report.html
# make matrix regenerate docs/capability_matrix.{json,md,html}

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-all bench-beam bench-peers bench-report beam-venv peer-venvs matrix setup clean chromium redis-server

run: $(STAMP)
	@echo "== word count (examples/wordcount.py) on the direct runner"
	$(PY) -m tidal run examples/wordcount.py --runner direct
	@echo
	@echo "== stock prices per minute (examples/stock_prices.py) on the direct runner"
	$(PY) -m tidal run examples/stock_prices.py --runner direct
	@echo
	@echo "== Flink's stock-market example (examples/stock_market.py): warnings from delta windows on a 5% move, counted and joined"
	@echo "   with tweet mentions per 30 s, their correlation; on every runner, with the results shown equal"
	RAY_AUTH_MODE=disabled $(PY) examples/stock_market.py
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
	@echo "== a running job's per-user counters read from outside it, then from its last commit (examples/queryable_state.py)"
	$(PY) examples/queryable_state.py
	@echo
	@echo "== a Redis stream consumed as it arrives, per-window means written back exactly once (examples/redis_stream.py)"
	$(PY) examples/redis_stream.py
	@echo
	@echo "== a worker killed, then a node lost, mid-stream on a 3-node Ray: recovery from a checkpoint, output exactly once (examples/fault_tolerance.py)"
	RAY_AUTH_MODE=disabled $(PY) examples/fault_tolerance.py
	@echo
	@echo "== a short comparison (python -m tidal bench --report): the runners on four workloads (Yahoo among them), key scaling,"
	@echo "   latency against throughput, Flink and Spark when make bench-peers installed them; the page is bench-out/report.html"
	RAY_AUTH_MODE=disabled $(PY) -m tidal bench --workloads wordcount,q5,sessions,yahoo --events 3000 --repeats 1 \
	  --keys 100,10000 --key-sizes 2000,20000 --rates 2000,10000 --sweep-seconds 1 --report --out bench-out

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

bench-report: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m tidal bench --report --out bench-out

# Apache Flink (PyFlink) and Apache Spark (PySpark), the harness's other engines, live in virtualenvs of
# their own, as Beam does (their pins must not constrain .venv), each with tidal installed; Java runs them.
# make test does not install them: their downloads and installs take longer than the rest of the suite
# (see the README); the test that runs them is skipped with a line naming this target.
FLINK_VENV := .venv-flink
SPARK_VENV := .venv-spark

bench-peers: $(STAMP) peer-venvs
	RAY_AUTH_MODE=disabled $(PY) -m tidal bench --workloads wordcount,windowed,sessions,q0,q1,q2,q5,yahoo --runners direct \
	  --no-beam --out bench-out/peers

peer-venvs:
	@$(MAKE) --no-print-directory $(FLINK_VENV)/.installed || \
	  echo "could not install apache-flink into $(FLINK_VENV): the harness will say Flink is missing"
	@$(MAKE) --no-print-directory $(SPARK_VENV)/.installed || \
	  echo "could not install pyspark into $(SPARK_VENV): the harness will say Spark is missing"

$(FLINK_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/python -m pip install -q -e '.[flink]'
	touch $@

$(SPARK_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SPARK_VENV)
	$(SPARK_VENV)/bin/python -m pip install -q -e '.[spark]'
	touch $@

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
	rm -rf $(VENV) $(BEAM_VENV) $(FLINK_VENV) $(SPARK_VENV) build dist *.egg-info
