# make run    set up .venv if needed, then the tour: examples, every runner, a short benchmark
# make test   set up .venv if needed, then the whole test suite
# make bench  the direct runner word-count benchmark
# make matrix regenerate docs/capability_matrix.{json,md,html}

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench matrix setup clean chromium

run: $(STAMP)
	@echo "== word count (examples/wordcount.py) on the direct runner"
	$(PY) -m tidal run examples/wordcount.py --runner direct
	@echo
	@echo "== stock prices per minute (examples/stock_prices.py) on the direct runner"
	$(PY) -m tidal run examples/stock_prices.py --runner direct
	@echo
	@echo "== one windowed pipeline on every runner (examples/every_runner.py)"
	RAY_AUTH_MODE=disabled $(PY) examples/every_runner.py
	@echo
	@echo "== a short runner comparison (python -m tidal bench), report in bench-out/"
	RAY_AUTH_MODE=disabled $(PY) -m tidal bench --workloads wordcount,q5,sessions --events 3000 --out bench-out

test: $(STAMP) chromium
	$(PY) -m pytest -q

# Headless Chromium renders the capability matrix page in its test (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing Debian's chromium for the HTML test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "could not install chromium: its test will be skipped"; }

matrix: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m tidal matrix --out docs

bench: $(STAMP)
	$(PY) benchmarks/direct_wordcount.py

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info
