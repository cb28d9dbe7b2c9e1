"""SIGHUP reload: live settings apply, bad files are refused, the rest waits for a restart."""

import pytest
from twisted.application.service import MultiService
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from ctid import config
from ctid.logs import JSONLogService
from ctid.reload import ReloadService, changed_settings

BASE = "[ami]\nsecret = s3cret\n[ctid]\nlog_level = info\n"


def test_changed_settings_names_section_and_key():
    """The diff of two configurations lists section.key names, never values."""
    old = config.parse(BASE)
    new = config.parse(BASE.replace("info", "debug") + "[pbxsim]\ncalls_per_minute = 3\n")
    assert changed_settings(old, new) == ["daemon.log_level", "pbxsim.simulator.calls_per_minute"]


def make(tmp_path, text):
    path = tmp_path / "ctid.ini"
    path.write_text(text)
    root = MultiService()
    log = JSONLogService(str(tmp_path / "ctid.jsonl"), "info")
    log.setServiceParent(root)
    service = ReloadService(str(path), root, Clock(), current=config.load(str(path)))
    return path, log, service


def test_reload_applies_log_level(tmp_path):
    """A new log_level reaches the JSON log at once."""
    path, log, service = make(tmp_path, BASE)
    path.write_text(BASE.replace("info", "error"))
    assert service.reload() == ["daemon.log_level"]
    assert service.current.daemon.log_level == "error"
    assert log._predicate.logLevelForNamespace("ctid") == LogLevel.error


@pytest.mark.allow_logged_errors
def test_reload_refuses_a_broken_file(tmp_path):
    """A file that no longer validates is refused and the running settings stay."""
    path, log, service = make(tmp_path, BASE)
    before = service.current
    path.write_text(BASE + "bogus = 1\n")
    assert service.reload() == []
    assert service.current is before


def test_reload_warns_about_restart_only_settings(tmp_path):
    """A change that cannot apply live is logged as needing a restart, by name only."""
    path, log, service = make(tmp_path, BASE)
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        path.write_text(BASE.replace("s3cret", "n3w-secret"))
        assert service.reload() == ["ami.secret"]
    finally:
        globalLogPublisher.removeObserver(seen.append)
    warnings = [e for e in seen if e.get("setting") == "ami.secret"]
    assert warnings and warnings[0]["log_level"] == LogLevel.warn
    assert not any("n3w-secret" in repr(e) for e in seen)


def test_json_log_file_gets_structured_events_at_the_level(tmp_path):
    """The JSON-lines log holds one structured event per line, at or above the configured level."""
    import json

    from twisted.logger import Logger

    path = tmp_path / "ctid.jsonl"
    service = JSONLogService(str(path), "info")
    service.startService()
    log = Logger(namespace="ctid.test")
    log.debug("hidden {n}", n=1)
    log.info("call {call_id} started", call_id="1795.1")
    service.stopService()
    lines = [json.loads(line.strip("\x1e")) for line in path.read_text().splitlines() if line.strip()]
    assert [e["log_format"] for e in lines if e.get("log_namespace") == "ctid.test"] == ["call {call_id} started"]
    assert lines[-1]["call_id"] == "1795.1"
