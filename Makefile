# Two commands for a newcomer: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench vendor clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP)
	bash scripts/ensure_services.sh
	bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	bash scripts/ensure_services.sh
	$(PY) bench/system_bench.py
	$(PY) bench/gateway_bench.py
	$(PY) bench/evals_bench.py
	$(PY) bench/agent_bench.py
	$(PY) bench/web_bench.py

# Re-vendor the web UI's JavaScript libraries (npm pack of pinned versions, integrity checked).
vendor:
	bash scripts/vendor_static.sh

clean:
	rm -rf $(VENV) var
