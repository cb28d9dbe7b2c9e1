"""The sandbox bank on real SQLite and MariaDB: every ICoreBanking operation, reversals, and no secrets stored."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select
from twisted.application.service import Service
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from ctid.adapters.corebank import sandbox_schema as schema
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import DEMO_CUSTOMERS, seed_bank
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import ThreadlessDatabasePool
from ctid.banking import (
    BadCredentials,
    HostUnavailable,
    ICoreBanking,
    IdentityMismatch,
    InsufficientFunds,
    InvalidRequest,
    NotSigned,
    PasswordChangeNotAllowed,
    SessionExpired,
    TradeRejected,
)

KEY = "test-sandbox-account-key"
#: 2026-03-15 10:00 in the bank's time zone.
NOW = datetime(2026, 3, 15, 10, 0, tzinfo=schema.BANK_TZ)
PUBLIC_CARD, PUBLIC_PASSWORD = "6222020030004321", "123456"
SIGNED_CARD, SIGNED_PASSBOOK, SIGNED_PASSWORD = "6222020018881234", "6222020020005678", "888888"
CORPORATE_SHORT, CORPORATE_PASSWORD = "80001", "666666"


def result(deferred):
    """The result of an already-fired Deferred (the threadless pool runs at once); raises its failure."""
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


@pytest.fixture(scope="module")
def engine(database_url):
    """An engine on each backend, with the sandbox tables created (and dropped after the module)."""
    engine = make_engine(database_url, pool_size=2)
    with engine.begin() as connection:
        schema.metadata.create_all(connection)
    yield engine
    with engine.begin() as connection:
        schema.metadata.drop_all(connection)
    engine.dispose()


@pytest.fixture
def bank(engine):
    """A freshly seeded sandbox bank (cheap scrypt) on a threadless pool and a Clock at :data:`NOW`."""
    with engine.begin() as connection:
        seed_bank(connection, KEY, seed=7, generated=5, now=NOW.replace(tzinfo=None), scrypt_n=16)
    pool = ThreadlessDatabasePool(engine, name="bank")
    pool.startService()  # never stopped: stopping would dispose of the module's engine
    clock = Clock()
    clock.advance(NOW.timestamp())
    yield SandboxBank(pool, KEY, clock)


def test_interface(bank):
    """The sandbox provides ICoreBanking completely."""
    assert verifyObject(ICoreBanking, bank)


def test_verify_public_opens_a_session_with_masked_accounts(bank):
    """A public card and its password open a session naming the customer and only the masked number."""
    session = result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    assert (session.kind, session.customer_id, session.customer_name) == ("public", "C0003", "李秀英")
    assert session.account_masked == "**** **** **** 4321" and not session.signed
    assert session.expires_at > NOW
    assert PUBLIC_CARD not in repr(session)


@pytest.mark.parametrize("number, password", [
    (PUBLIC_CARD, "654321"), ("6222029999999999", PUBLIC_PASSWORD), ("not a number", PUBLIC_PASSWORD),
    (PUBLIC_CARD, "12ab"), (PUBLIC_CARD, None),
])
def test_wrong_or_malformed_credentials_look_alike(bank, number, password):
    """Wrong passwords, unknown numbers and malformed input all fail with BadCredentials, quoting nothing."""
    with pytest.raises(BadCredentials) as raised:
        result(bank.verify_public(number, password))
    assert PUBLIC_CARD not in str(raised.value) and PUBLIC_PASSWORD not in str(raised.value)


def test_verify_signed_refuses_public_customers_and_lists_own_accounts(bank):
    """verify_signed says NotSigned to a public customer; a signed one gets all their personal accounts."""
    with pytest.raises(NotSigned):
        result(bank.verify_signed(PUBLIC_CARD, PUBLIC_PASSWORD))
    session = result(bank.verify_signed(SIGNED_PASSBOOK, SIGNED_PASSWORD))
    assert session.kind == "signed" and session.signed
    assert [a.masked[-4:] for a in session.accounts] == ["5678", "1234"]


def test_verify_corporate_by_short_account(bank):
    """A corporate short account and query password open a session over the company's accounts."""
    session = result(bank.verify_corporate(CORPORATE_SHORT, CORPORATE_PASSWORD))
    assert session.kind == "corporate" and session.customer_id == "C0002"
    assert [a.kind for a in session.accounts] == ["corporate", "corporate"]
    with pytest.raises(BadCredentials):
        result(bank.verify_corporate(PUBLIC_CARD, PUBLIC_PASSWORD))


def test_balance_and_transaction_queries(bank):
    """Balance; recent lines newest first; lines from a date oldest first; ±5 % amount search; a statement."""
    session = result(bank.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    balance = result(bank.balance(session))
    assert balance.currency == "CNY" and balance.ledger_fen == balance.available_fen > 0
    recent = result(bank.recent_transactions(session))
    assert 0 < len(recent) <= 10 and [t.at for t in recent] == sorted((t.at for t in recent), reverse=True)
    assert recent[0].balance_fen == balance.ledger_fen
    since = result(bank.transactions_since(session, date(2026, 1, 1), limit=10))
    assert [t.at for t in since] == sorted(t.at for t in since) and since[0].at.date() >= date(2026, 1, 1)
    salary = result(bank.transactions_by_amount(session, 820_000))
    assert salary and all(t.amount_fen == 850_000 and t.description == "工资" for t in salary)
    statement = result(bank.statement(session, date(2025, 12, 1)))
    assert statement.holder == "王建国" and 10 < len(statement.lines) <= 100
    with pytest.raises(InvalidRequest):
        result(bank.recent_transactions(session, limit=0))
    with pytest.raises(InvalidRequest):
        result(bank.transactions_by_amount(session, 1.5))


def test_password_change_is_a_bank_setting_for_public_customers(bank):
    """Public customers may not change passwords unless the bank allows it; signed ones may."""
    public = result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    assert result(bank.can_change_password(public)) is False
    with pytest.raises(PasswordChangeNotAllowed):
        result(bank.change_password(public, PUBLIC_PASSWORD, "111111"))
    bank.password_change_allowed = True
    assert result(bank.can_change_password(public)) is True
    with pytest.raises(BadCredentials):
        result(bank.change_password(public, "000000", "111111"))
    result(bank.change_password(public, PUBLIC_PASSWORD, "111111"))
    with pytest.raises(BadCredentials):
        result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    assert result(bank.verify_public(PUBLIC_CARD, "111111")).customer_id == "C0003"


def test_loss_report_checks_a_public_customers_id_then_freezes(bank):
    """A public loss report needs the holder's ID; a signed one none; a frozen account pays nothing."""
    public = result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    with pytest.raises(InvalidRequest):
        result(bank.report_loss(public))
    with pytest.raises(IdentityMismatch):
        result(bank.report_loss(public, "id_card", "110101199003079999"))
    report = result(bank.report_loss(public, "id_card", "110101199003071234"))
    assert report.account_masked == "**** **** **** 4321" and len(report.reference) == 12
    signed = result(bank.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    result(bank.report_loss(signed))
    with pytest.raises(TradeRejected) as raised:
        result(bank.pay_bill(signed, "phone", "02162345678", 100))
    assert raised.value.code == "frozen"


def test_transfers_between_own_accounts(bank):
    """A signed customer moves money between their cards; too much, a stranger's account or a public customer fail."""
    session = result(bank.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    other = session.accounts[1]
    before = result(bank.balance(session)).ledger_fen
    receipt = result(bank.transfer(session, other.ref, 12_345))
    assert receipt.balance_fen == before - 12_345 and receipt.amount_fen == 12_345
    with pytest.raises(InsufficientFunds):
        result(bank.transfer(session, other.ref, before * 10))
    with pytest.raises(InvalidRequest):
        result(bank.transfer(session, "A00001", 100))
    public = result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    with pytest.raises(NotSigned):
        result(bank.transfer(public, public.account.ref, 100))


def test_bills_query_pay_and_prepay(bank):
    """Signed customers query and pay bills and prepay a mobile; public customers are told it needs signing."""
    session = result(bank.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    bill = result(bank.query_bill(session, "phone", "02162345678"))
    assert bill.amount_due_fen == 12_800 and bill.payee
    result(bank.pay_bill(session, "phone", "02162345678", 12_800))
    assert result(bank.query_bill(session, "phone", "02162345678")).amount_due_fen == 0
    with pytest.raises(TradeRejected):
        result(bank.pay_bill(session, "phone", "02162345678", 1))
    receipt = result(bank.prepay(session, "mobile", "13800138000", 5_000))
    assert receipt.amount_fen == 5_000
    with pytest.raises(InvalidRequest):
        result(bank.prepay(session, "phone", "02162345678", 5_000))
    with pytest.raises(TradeRejected) as raised:
        result(bank.query_bill(session, "water", "999999"))
    assert raised.value.code == "not_found"
    public = result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    with pytest.raises(NotSigned):
        result(bank.query_bill(public, "phone", "02162345678"))


def test_information_services(bank):
    """Interest and exchange rates (Decimal), product introductions and policies."""
    rates = result(bank.interest_rates())
    assert rates[0].product == "demand" and str(rates[3].rate_percent) == "0.950"
    assert result(bank.exchange_rates())[0].currency == "USD"
    assert {p.code for p in result(bank.products())} >= {"card", "wealth"}
    assert result(bank.policy("deposit")).title == "存款保险条例"
    with pytest.raises(TradeRejected):
        result(bank.policy("nothing"))


def test_reversal_undoes_a_trade_once(bank):
    """Reversing a transfer restores both balances; a second reversal, or an unknown one, changes nothing."""
    session = result(bank.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    before = result(bank.balance(session)).ledger_fen
    receipt = result(bank.transfer(session, session.accounts[1].ref, 50_000))
    assert result(bank.reverse(receipt.reference)) is True
    assert result(bank.balance(session)).ledger_fen == before
    assert result(bank.reverse(receipt.reference)) is False
    assert result(bank.reverse("000000000000")) is False


def test_reversal_of_a_password_change_restores_the_old_password(bank):
    """A reversed password change puts the old password back."""
    session = result(bank.verify_signed(SIGNED_CARD, SIGNED_PASSWORD))
    result(bank.change_password(session, SIGNED_PASSWORD, "999999"))
    with bank.pool.engine.connect() as connection:
        reference = connection.execute(select(schema.trades.c.reference)
                                       .where(schema.trades.c.kind == "password")).scalar_one()
    assert result(bank.reverse(reference)) is True
    assert result(bank.verify_signed(SIGNED_CARD, SIGNED_PASSWORD)).customer_id == "C0001"


def test_sessions_expire_and_close(bank):
    """A session is refused after close() or once its time is up."""
    session = result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    bank._clock.advance(timedelta(minutes=31).total_seconds())
    with pytest.raises(SessionExpired):
        result(bank.balance(session))
    session = result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
    result(bank.close(session))
    with pytest.raises(SessionExpired):
        result(bank.balance(session))


def test_no_number_password_or_id_is_stored_in_clear(bank):
    """No column anywhere holds a demo card number, short account, password or ID number."""
    secrets = set()
    for customer in DEMO_CUSTOMERS:
        secrets.add(customer.id_number)
        for account in customer.accounts:
            secrets.update({account.number, account.short, account.password})
    secrets.discard(None)
    with bank.pool.engine.connect() as connection:
        for table in schema.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for value in row:
                    assert str(value) not in secrets, f"{table.name} holds a secret"
                    assert not any(len(secret) > 8 and secret in str(value) for secret in secrets), table.name


def test_a_stopped_database_is_host_unavailable(bank):
    """When the database pool is not running, calls fail with HostUnavailable."""
    Service.stopService(bank.pool)  # not the pool's own stopService, which disposes of the shared engine
    with pytest.raises(HostUnavailable):
        result(bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD))
