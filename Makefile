# ctid — the two commands: `make run` and `make test` (see README.md, DEVELOPERS.md).
# Both create (once) and reuse a virtual environment in .venv/.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= conf/ctid.ini

.PHONY: run test lint bench clean venv

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# An editable install does not put twisted/plugins on sys.path: point a .pth at a folder holding only the plugin.
	mkdir -p $(VENV)/plugin-path/twisted/plugins
	ln -sf $(CURDIR)/twisted/plugins/ctid_plugin.py $(VENV)/plugin-path/twisted/plugins/ctid_plugin.py
	echo "$(CURDIR)/$(VENV)/plugin-path" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ctid-dev-plugins.pth"
	touch $(STAMP)

run: venv
	mkdir -p var
	$(BIN)/python scripts/ctid-seed sqlite:///var/ctid.sqlite
	$(BIN)/python scripts/ctid-seed-bank --generated 20 sqlite:///var/bank.sqlite
	$(BIN)/twistd --pidfile= --logger ctid.logs.console_observer -n ctid --config $(CONFIG)

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/ami_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache
