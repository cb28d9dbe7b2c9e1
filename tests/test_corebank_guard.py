"""The core-banking guard: wrong-password lockout, an audit record per attempt and trade, no secrets in logs."""

from __future__ import annotations

from datetime import datetime

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from ctid.adapters.corebank import sandbox_schema as schema
from ctid.adapters.corebank.guard import GuardedBank
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import seed_bank
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import ThreadlessDatabasePool
from ctid.banking import AccountLocked, BadCredentials, ICoreBanking, ICoreBankingMonitor, InsufficientFunds
from tests.test_corebank_sandbox import (
    KEY,
    NOW,
    PUBLIC_CARD,
    PUBLIC_PASSWORD,
    SIGNED_CARD,
    SIGNED_PASSWORD,
    result,
)

SECRETS = (PUBLIC_CARD, PUBLIC_PASSWORD, SIGNED_CARD, SIGNED_PASSWORD, "654321", "111111")


@pytest.fixture
def audit():
    """The trade log: a list of the keyword records the guard gives it."""
    return []


@pytest.fixture
def guard(tmp_path, audit):
    """A guard (3 attempts, 10 minutes) around a seeded SQLite sandbox bank, on a Clock at NOW."""
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.sqlite'}", pool_size=1)
    with engine.begin() as connection:
        schema.metadata.create_all(connection)
        seed_bank(connection, KEY, seed=3, generated=2, now=NOW.replace(tzinfo=None), scrypt_n=16)
    pool = ThreadlessDatabasePool(engine, name="bank")
    pool.startService()
    clock = Clock()
    clock.advance(NOW.timestamp())
    bank = SandboxBank(pool, KEY, clock, password_change_allowed=True)
    yield GuardedBank(bank, clock, trade_log=lambda **record: audit.append(record), max_attempts=3,
                      lockout_minutes=10)
    pool.stopService()


def test_interfaces(guard):
    """The guard is a complete core bank and a monitor."""
    assert verifyObject(ICoreBanking, guard) and verifyObject(ICoreBankingMonitor, guard)


def test_lockout_after_wrong_passwords_then_unlock(guard):
    """Two wrong passwords say how many tries are left; the third locks, even the right password, until time is up."""
    lefts = []
    for _ in range(2):
        with pytest.raises(BadCredentials) as raised:
            result(guard.verify_public(PUBLIC_CARD, "654321"))
        lefts.append(raised.value.attempts_left)
    assert lefts == [2, 1]
    with pytest.raises(AccountLocked) as raised:
        result(guard.verify_public(PUBLIC_CARD, "654321"))
    assert raised.value.until > NOW
    with pytest.raises(AccountLocked):
        result(guard.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    assert guard.counters()["locked_accounts"] == 1
    guard._clock.advance(10 * 60)
    assert result(guard.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD)).customer_id == "C0003"
    assert guard.counters()["locked_accounts"] == 0


def test_a_success_resets_the_count_and_accounts_count_separately(guard):
    """A right password clears the wrong ones before it; another account's failures do not count."""
    for _ in range(2):
        with pytest.raises(BadCredentials):
            result(guard.verify_public(PUBLIC_CARD, "654321"))
    with pytest.raises(BadCredentials) as raised:
        result(guard.verify_signed(SIGNED_CARD, "654321"))
    assert raised.value.attempts_left == 2
    result(guard.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    with pytest.raises(BadCredentials) as raised:
        result(guard.verify_public(PUBLIC_CARD, "654321"))
    assert raised.value.attempts_left == 2


def test_wrong_old_passwords_count_towards_the_lockout(guard):
    """A wrong old password in a password change counts like a wrong password at verification."""
    session = result(guard.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    for left in (2, 1):
        with pytest.raises(BadCredentials) as raised:
            result(guard.change_password(session, "654321", "111111"))
        assert raised.value.attempts_left == left
    with pytest.raises(AccountLocked):
        result(guard.change_password(session, "654321", "111111"))
    with pytest.raises(AccountLocked):
        result(guard.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))


def test_every_attempt_and_trade_is_audited_with_plain_values(guard, audit):
    """Each verification and operation gives one trade-log record: kind, masked account, amount, result, time."""
    with pytest.raises(BadCredentials):
        result(guard.verify_signed(SIGNED_CARD, "654321"))
    session = result(guard.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    result(guard.balance(session))
    result(guard.transfer(session, session.accounts[1].ref, 1_000))
    result(guard.pay_bill(session, "phone", "02162345678", 500))
    result(guard.interest_rates())
    assert [(r["kind"], r["result"], r["amount_fen"]) for r in audit] == [
        ("verify_signed", "bad_credentials", None), ("verify_signed", "ok", None), ("balance", "ok", None),
        ("transfer", "ok", 1_000), ("pay_bill_phone", "ok", 500), ("interest_rates", "ok", None)]
    assert {r["account_masked"] for r in audit[:5]} == {"**** **** **** 1234"}
    assert [r["customer_id"] for r in audit] == [None, "C0001", "C0001", "C0001", "C0001", None]
    assert audit[3]["trade_id"].isdigit() and audit[0]["trade_id"] == "ivr-00000001"
    assert all(r["channel"] == "ivr" and isinstance(r["at"], datetime) and r["latency_ms"] >= 0 for r in audit)
    assert not any(secret in repr(audit) for secret in SECRETS)


@pytest.mark.allow_logged_errors
def test_a_failing_trade_log_never_fails_the_trade(guard, fail_on_logged_errors):
    """When the trade log raises, the error is logged and the caller still gets the result."""
    def broken(**record):
        raise RuntimeError("records store down")

    guard.trade_log = broken
    session = result(guard.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    assert result(guard.balance(session)).currency == "CNY"
    assert len(fail_on_logged_errors) == 2 and "trade log failed" in fail_on_logged_errors[0]["log_format"]


def test_no_secret_reaches_a_log_event(guard):
    """Lockouts, failures and trades log no number, password or ID — in the text or any field."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(3):
            with pytest.raises((BadCredentials, AccountLocked)):
                result(guard.verify_public(PUBLIC_CARD, "654321"))
        session = result(guard.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
        result(guard.change_password(session, SIGNED_PASSWORD, "111111"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("locked" in e.get("log_format", "") for e in events)
    assert not any(secret in repr(event) for event in events for secret in SECRETS)


def test_trade_recorder_writes_the_trade_log(guard):
    """The factory's recorder turns guard records into trade-log rows: yuan, last 4 digits, no latency on timeouts."""
    from ctid.adapters.corebank.factory import trade_recorder
    from ctid.records import Records

    class Sink:
        def __init__(self):
            self.rows = []

        def write(self, table, row):
            self.rows.append((table, row))
            return row["trade_id"]

    sink = Sink()
    guard.trade_log = trade_recorder(Records(sink, guard._clock))
    session = result(guard.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    with pytest.raises(InsufficientFunds):
        result(guard.transfer(session, session.accounts[1].ref, 10**11))
    (_, verify), (table, transfer) = sink.rows
    assert table == "trade_log" and verify["kind"] == "verify_signed" and verify["result_code"] == "ok"
    assert transfer["account"] == "**** **** **** 1234" and transfer["amount"] == "1000000000"
    assert transfer["result_code"] == "insufficient_funds" and transfer["customer_id"] == "C0001"
    assert transfer["latency_ms"] == 0 and transfer["currency"] == "CNY"
