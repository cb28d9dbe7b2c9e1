"""IV-11 end to end: during a whole IVR session where a caller types a card number and its password and then asks
for an agent, nothing ctid writes — log events, CTI events and answers, rows of its database and of the bank's,
the records spool — holds the password, the PIN or the full card number."""

from __future__ import annotations

import dataclasses
import re

import pytest_twisted
from sqlalchemy import create_engine, inspect, select, text
from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher

from ctid.adapters.corebank.guard import GuardedBank
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import seed_bank
from ctid.adapters.pbxsim import population
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool
from ctid.calls import CallEnded
from ctid.client import CTIClient
from tests.e2e import PASSWORD, Daemon, daemon_config

KEY = "no-secrets-sandbox-key-0123"
CARD, PIN = population.DEMO_SIGNED
#: The switch's own logs (the simulated Asterisk sends the caller's DTMF) are not ctid's.
SWITCH = "ctid.adapters.pbxsim"


def _joined_digits(text_: str) -> str:
    """``text_`` with digit groups rejoined (``6222 0200 …`` or ``6222-0200`` → ``62220200…``)."""
    return re.sub(r"(?<=\d)[ \-](?=\d)", "", text_)


def leaks(texts: list[str]) -> list[str]:
    """The texts that hold the card number, the PIN or the agent's password (as is or digit groups rejoined)."""
    found = []
    for item in texts:
        joined = _joined_digits(item)
        if CARD in joined or PIN in joined or PASSWORD in item:
            found.append(item[:300])
    return found


def rows_of(url: str) -> list[str]:
    """Every row of every table at ``url``, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            names = inspect(connection).get_table_names()
            return [f"{name}: {row!r}" for name in names
                    for row in connection.execute(select(text("*")).select_from(text(f'"{name}"')))]
    finally:
        engine.dispose()


@pytest_twisted.ensureDeferred
async def test_no_secret_is_written_anywhere_during_an_ivr_session(tmp_path):
    """Card number + password typed, verified, then 0 for an agent with the screen pop: no secret anywhere."""
    logged = []
    globalLogPublisher.addObserver(logged.append)
    settings = daemon_config(tmp_path, ivr=True, patience="120 120", talk_time="1 1")
    settings = dataclasses.replace(settings, records=dataclasses.replace(settings.records,
                                                                         spool=str(tmp_path / "records.spool")))
    daemon = Daemon(settings)
    bank_url = f"sqlite:///{tmp_path / 'bank.sqlite'}"
    pool = DatabasePool(make_engine(bank_url), reactor, name="bank-db", max_threads=2)
    client = CTIClient(reactor, name="test-secrets/1", retry_policy=lambda attempt: 0.05)
    received, answers = [], []
    try:
        await daemon.start()
        pool.startService()
        sandbox = SandboxBank(pool, KEY, reactor)
        await sandbox.create_tables()
        await pool.run(seed_bank, KEY, 1, 3, None, 16)
        daemon.root.getServiceNamed("ivr").bank = GuardedBank(sandbox, reactor, max_attempts=3)
        await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
        client.on_event(None, received.append)
        answers.append(await client.call("Login", agent="1001", password=PASSWORD, station="1001"))
        answers.append(await client.call("SetAgentState", state="ready"))
        trunk = daemon.call_in("13800138000", "95566", script="12" + CARD + "#" + PIN + "#0", patience=120)
        pops = await daemon.until(lambda: [e.data for e in received if e.name == "Delivered"], "the screen pop", 60)
        assert pops[0]["data"]["CTID_VERIFIED"] == "yes"  # the password was typed, checked and accepted
        await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end", 90)
        answers.append(await client.call("SnapshotAgent"))
        await client.close()
    finally:
        if pool.running:
            await pool.stopService()
        await daemon.stop()  # flushes the records
        globalLogPublisher.removeObserver(logged.append)
    ours = [e for e in logged if not str(e.get("log_namespace", "")).startswith(SWITCH)]
    assert ours
    assert leaks([repr(e) for e in ours] + [formatEvent(e) for e in ours]) == []
    assert received and leaks([repr(e) for e in received] + [repr(a) for a in answers]) == []
    database = rows_of(f"sqlite:///{tmp_path / 'ctid.sqlite'}")
    assert any("1001" in row for row in database)  # the agent's session and the call were recorded
    assert leaks(database) == []
    assert leaks(rows_of(bank_url)) == []
    spool = tmp_path / "records.spool"
    assert leaks([spool.read_text(errors="replace")] if spool.exists() else []) == []


def test_the_scanner_finds_each_secret_in_any_spelling():
    """The scan itself: full card (plain, grouped), PIN and password are found; a masked card is not."""
    assert leaks([f"card {CARD}", "6222 0200 1888 1234", "6222-0200-1888-1234", f"pin={PIN}", f"pw {PASSWORD}"]) \
        and len(leaks([f"card {CARD}", "6222 0200 1888 1234", f"pin={PIN}", f"pw {PASSWORD}"])) == 4
    assert leaks(["**** **** **** 1234", "account ...1234"]) == []
