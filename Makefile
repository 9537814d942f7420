# The README's two commands: `make demo` and `make test`. Everything generated goes to .venv/ and .rtml/.
PYTHON ?= python3.11
VENV   := .venv
export PIP_CACHE_DIR := $(CURDIR)/.rtml/cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: bootstrap demo test up down status clean

## bootstrap: the project venv (Airflow 3.3 + providers + airflow-rtml, pinned by constraints/airflow.txt)
bootstrap: $(VENV)/.rtml-installed

$(VENV)/.rtml-installed: pyproject.toml constraints/airflow.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	@echo "[make] creating $(VENV) and installing airflow-rtml with Airflow (pinned: constraints/airflow.txt)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade "pip>=24"
	$(VENV)/bin/pip install --quiet -c constraints/airflow.txt -e '.[test,demo,offline,postgres]'
	@touch $@

## demo: install everything, bring the embedded stack up and run the real-time ML chain (3 event-time hours)
demo: bootstrap
	$(VENV)/bin/rtml demo $(DEMO_ARGS)

## test: install everything, bring the embedded stack up, run every test, stop the stack
test: bootstrap
	bash scripts/run-tests.sh

up: bootstrap
	$(VENV)/bin/rtml local up
status: bootstrap
	$(VENV)/bin/rtml local status
down: bootstrap
	$(VENV)/bin/rtml local down
## clean: stop the stack and delete all generated state except the download caches
clean:
	-$(VENV)/bin/rtml local down
	rm -rf .rtml/run .rtml/logs .rtml/flink .rtml/kafka/data .rtml/airflow
