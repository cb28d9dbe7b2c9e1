# ctid — the two commands: `make run` and `make test` (see README.md, DEVELOPERS.md).
# Both create (once) and reuse a virtual environment in .venv/.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= conf/ctid.ini

.PHONY: run test lint bench clean venv ldap-server tts-engine

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

# mypy (settings in setup.cfg) cannot follow the editable install's import hook: link protocols/ and adapters/ where
# they install, under ctid/ in .venv/mypy-tree (its mypy_path); ctid/ itself is found in the checkout.
lint: venv
	$(BIN)/ruff check .
	mkdir -p $(VENV)/mypy-tree/ctid
	ln -sfn $(CURDIR)/protocols $(VENV)/mypy-tree/ctid/protocols
	ln -sfn $(CURDIR)/adapters $(VENV)/mypy-tree/ctid/adapters
	$(BIN)/mypy

test: venv lint ldap-server tts-engine
	$(BIN)/python -m pytest -q

# The LDAP tests start their own OpenLDAP slapd on free loopback ports (tests/ldapserver.py).  As root on
# Debian, install it when missing, and stop the system slapd the package starts (it would hold port 389).
ldap-server:
	@if ! command -v slapd >/dev/null && [ ! -x /usr/sbin/slapd ] && [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null; then \
	  echo "installing Debian's slapd and ldap-utils for the LDAP tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q slapd ldap-utils >/dev/null \
	    || { apt-get update -q >/dev/null && apt-get install -y -q slapd ldap-utils >/dev/null; }; \
	  (systemctl disable --now slapd || invoke-rc.d slapd stop) >/dev/null 2>&1 || true; \
	fi

# The text-to-speech tests (tests/test_tts.py) render with espeak-ng and sox.  As root on Debian, install them when
# missing; elsewhere those tests skip (CTID_REQUIRE_TTS=1, as in CI, makes them fail instead).
tts-engine:
	@if { ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; } && [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null; then \
	  echo "installing Debian's espeak-ng and sox for the text-to-speech tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q espeak-ng sox >/dev/null \
	    || { apt-get update -q >/dev/null && apt-get install -y -q espeak-ng sox >/dev/null; }; \
	fi

bench: venv
	$(BIN)/python bench/ami_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache
