"""The rest of the bank's IVR paths end to end (issue 5): simulated callers' DTMF through the simulated
switch, over real FastAGI, against the seeded sandbox bank.

Each test asserts what the caller heard (the AGI commands: prompt names and
Playback pieces) and, for trades, what changed in the sandbox bank.  The
prompts play faster than in tests/test_ivr_e2e.py (the world's media speed is
raised) so that ten spoken transactions fit in a short test.
"""

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
import pytest_twisted
from sqlalchemy import select

from ctid import banking
from ctid.adapters.corebank import sandbox_schema as schema
from ctid.adapters.corebank.sandbox_data import DEMO_BILLS, DEMO_CUSTOMERS, EXCHANGE_RATES
from ctid.adapters.pbxsim import population
from ctid.ivr import say
from tests.test_ivr_e2e import CARD, PIN, SHORT, SHORT_PIN, SIGNED, SIGNED_PIN, line, pieces  # noqa: F401

PUBLIC = "111" + CARD + "#" + PIN + "#"
SIGNED_IN = "12" + SIGNED + "#" + SIGNED_PIN + "#"
CORPORATE = "13" + SHORT + "#" + SHORT_PIN + "#"
PASSBOOK_OF_SIGNED = next(a for c in DEMO_CUSTOMERS for a in c.accounts if a.number.endswith("5678"))
CARD_HOLDER_ID = next(c.id_number for c in DEMO_CUSTOMERS if c.accounts[0].number == CARD)
BILLS = {service: (number, due) for service, number, _, due in DEMO_BILLS}


@pytest.fixture
def fast(line):  # noqa: F811
    """The bank line with prompts at 100 times real speed (the simulator's most) and quick-fingered callers
    (keys 50–100 ms apart), so that many paths fit in the suite's time."""
    line.daemon.world.media_speed = 100

    def call(script, number="13800138000"):
        caller = population.Caller(line.daemon.world, random.Random(7), line.daemon.sim.settings, number, "95566",
                                   120, script)
        caller.dtmf.first = caller.dtmf.between = (0.05, 0.1)
        return caller.call()

    line.call = call
    return line


def day_keys(day: date) -> str:
    return f"{day:%Y%m%d}"


def amount_keys(fen: int) -> str:
    return f"{fen // 100}*{fen % 100:02d}#"


def spoken(transaction: banking.Transaction) -> list[str]:
    """The pieces of one transaction as say_transactions reads it."""
    return (say.say_date(transaction.at, "zh") + ["debit" if transaction.amount_fen < 0 else "credit"]
            + say.money(abs(transaction.amount_fen), "zh") + ["balance-after"]
            + say.money(transaction.balance_fen, "zh"))


def recited(line, trunk) -> list[list[str]]:  # noqa: F811
    return [pieces(c) for c in line.commands(trunk) if "balance-after" in c]


async def until_recited(line, trunk, count: int) -> list[list[str]]:  # noqa: F811
    """Wait for ``count`` spoken transactions and the menu asked again after them."""
    await line.daemon.until(lambda: len(recited(line, trunk)) >= count, f"{count} spoken transactions", 60)
    menus = sum("menu" in c and "GET DATA" in c for c in line.commands(trunk))
    await line.daemon.until(lambda: sum("menu" in c and "GET DATA" in c for c in line.commands(trunk)) > menus,
                            "the menu after the transactions", 30)
    return recited(line, trunk)


async def account(line, last4: str):  # noqa: F811
    """The sandbox's row of the account ending ``last4``."""
    a = schema.accounts
    return await line.pool.run(lambda c: c.execute(select(a).where(a.c.last4 == last4)).one())


async def bill(line, service: str):  # noqa: F811
    b = schema.bills
    return await line.pool.run(lambda c: c.execute(select(b).where(b.c.service == service)).one())


async def trades(line, kind: str):  # noqa: F811
    t = schema.trades
    return await line.pool.run(lambda c: c.execute(select(t).where(t.c.kind == kind)).all())


# --- transactions and statements -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_recent_transactions_ten_newest_first(fast):
    """Signed, 2: the last ten transactions, newest first, each with its date, sign, amount and balance after."""
    trunk = fast.call(SIGNED_IN + "2")
    heard = await until_recited(fast, trunk, banking.MAX_SPOKEN)
    end = await fast.hang_up(trunk)
    session = await fast.bank.verify_signed(SIGNED, SIGNED_PIN)
    expected = await fast.bank.recent_transactions(session, 10)
    assert len(expected) == 10 and expected[0].at >= expected[-1].at
    assert heard == [spoken(t) for t in expected]
    assert end.path == "main>signed>account>recent"


@pytest_twisted.ensureDeferred
async def test_transactions_from_a_date_ten_oldest_first(fast):
    """Public card, 3, YYYYMMDD: ten transactions from that day, oldest first."""
    since = date.today() - timedelta(days=60)
    trunk = fast.call(PUBLIC + "3" + day_keys(since))
    heard = await until_recited(fast, trunk, banking.MAX_SPOKEN)
    end = await fast.hang_up(trunk)
    session = await fast.bank.verify_public(CARD, PIN)
    expected = await fast.bank.transactions_since(session, since, 10)
    assert len(expected) == 10 and expected[0].at <= expected[-1].at
    assert heard == [spoken(t) for t in expected]
    assert end.path == "main>public>card>account>by-date"


@pytest_twisted.ensureDeferred
async def test_fax_statement_requested(fast):
    """Signed, 4, date, fax number#: the line count is spoken and the fax request carries the bank's statement."""
    since = date.today() - timedelta(days=30)
    trunk = fast.call(SIGNED_IN + "4" + day_keys(since) + "02161234567#")
    command = await fast.until_command(trunk, "fax-will-be-sent")
    (fax,) = fast.faxes
    assert fax.fax_number == "02161234567" and fax.statement.since == since
    assert fax.statement.account_masked.endswith("1234") and SIGNED not in repr(fax)
    lines = len(fax.statement.lines)
    assert 0 < lines <= banking.MAX_STATEMENT
    assert pieces(command) == ["statement-lines"] + say.number(lines, "zh") + ["fax-will-be-sent"]
    await fast.hang_up(trunk)


# --- password changes ----------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_signed_password_change(fast):
    """Signed, 5, old#, new#, new#: the password changes (the bank allows it for signed customers)."""
    trunk = fast.call(SIGNED_IN + "5" + SIGNED_PIN + "#246802#246802#")
    await fast.until_command(trunk, "password-changed")
    await fast.hang_up(trunk)
    assert await fast.bank.verify_signed(SIGNED, "246802")
    assert len(await trades(fast, "password")) == 1


@pytest_twisted.ensureDeferred
async def test_password_change_needs_the_old_password(fast):
    """A wrong old password is told and nothing changes."""
    trunk = fast.call(SIGNED_IN + "5" + "000000#246802#246802#")
    await fast.until_command(trunk, "old-password-wrong")
    await fast.hang_up(trunk)
    assert not await trades(fast, "password")
    assert await fast.bank.verify_signed(SIGNED, SIGNED_PIN)


@pytest_twisted.ensureDeferred
async def test_public_password_change_refused_by_the_bank(fast):
    """Public card, 5, with the bank's setting off: 'please change it at a counter or ATM'."""
    trunk = fast.call(PUBLIC + "5")
    await fast.until_command(trunk, "change-password-at-counter")
    assert not any("enter-old-password" in c for c in fast.commands(trunk))
    await fast.hang_up(trunk)


@pytest_twisted.ensureDeferred
async def test_public_password_change_allowed_by_the_bank(fast):
    """With the bank's setting on, a public customer changes the password."""
    fast.bank.bank.password_change_allowed = True
    trunk = fast.call(PUBLIC + "5" + PIN + "#975310#975310#")
    await fast.until_command(trunk, "password-changed")
    await fast.hang_up(trunk)
    assert await fast.bank.verify_public(CARD, "975310")


# --- loss reports --------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_public_loss_report_with_id(fast):
    """Public card, 6, ID type 1, ID number#, 1: 'loss reported; also report at a counter'; the account is frozen."""
    trunk = fast.call(PUBLIC + "6" + "1" + CARD_HOLDER_ID + "#1")
    command = await fast.until_command(trunk, "loss-reported")
    assert "ctid/zh/loss-reported" in command
    assert any("enter-id-number" in c for c in fast.commands(trunk))
    await fast.hang_up(trunk)
    assert (await account(fast, CARD[-4:])).frozen
    assert len(await trades(fast, "loss")) == 1


@pytest_twisted.ensureDeferred
async def test_public_loss_report_with_a_wrong_id_is_refused(fast):
    """An ID that is not the holder's: 'does not match', the account stays usable."""
    trunk = fast.call(PUBLIC + "6" + "2" + CARD_HOLDER_ID + "#1")
    await fast.until_command(trunk, "id-does-not-match")
    await fast.hang_up(trunk)
    assert not (await account(fast, CARD[-4:])).frozen


@pytest_twisted.ensureDeferred
async def test_signed_loss_report_without_id(fast):
    """Signed, 6, 1: no ID asked; the account is frozen."""
    trunk = fast.call(SIGNED_IN + "61")
    await fast.until_command(trunk, "loss-reported")
    assert not any("enter-id" in c for c in fast.commands(trunk))
    await fast.hang_up(trunk)
    assert (await account(fast, SIGNED[-4:])).frozen


# --- transfers -----------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_signed_transfer_between_own_accounts(fast):
    """Signed, 7, target's last 4, amount#, 1: the check is read back, the money moves, the new balance is said."""
    before_from, before_to = await account(fast, "1234"), await account(fast, "5678")
    trunk = fast.call(SIGNED_IN + "7" + "5678" + "100*50#" + "1")
    check = await fast.until_command(trunk, "transfer-amount-is")
    assert pieces(check) == (["transfer-to-account-ending"] + say.digits("5678", "zh") + ["transfer-amount-is"]
                             + say.money(10_050, "zh"))
    done = await fast.until_command(trunk, "transfer-done")
    await fast.hang_up(trunk)
    after_from, after_to = await account(fast, "1234"), await account(fast, "5678")
    assert after_from.ledger_fen == before_from.ledger_fen - 10_050
    assert after_to.ledger_fen == before_to.ledger_fen + 10_050
    assert pieces(done) == ["transfer-done", "balance-is"] + say.money(after_from.ledger_fen, "zh")


# --- corporate -----------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_corporate_search_by_amount(fast):
    """Corporate, 6, amount#: the transactions within ±5 % of the amount are read."""
    session = await fast.bank.verify_corporate(SHORT, SHORT_PIN)
    wanted = abs((await fast.bank.recent_transactions(session, 1))[0].amount_fen)
    expected = await fast.bank.transactions_by_amount(session, wanted, 10)
    low, high = banking.amount_window(wanted)
    assert expected and all(low <= abs(t.amount_fen) <= high for t in expected)
    trunk = fast.call(CORPORATE + "6" + amount_keys(wanted))
    heard = await until_recited(fast, trunk, len(expected))
    end = await fast.hang_up(trunk)
    assert heard == [spoken(t) for t in expected]
    assert end.path == "main>corporate>by-amount"


@pytest_twisted.ensureDeferred
async def test_corporate_fax_statement(fast):
    """Corporate, 4, from the account's opening: up to 100 statement lines, faxed."""
    since = date.today() - timedelta(days=119)
    trunk = fast.call(CORPORATE + "4" + day_keys(since) + "02187654321#")
    command = await fast.until_command(trunk, "fax-will-be-sent")
    await fast.hang_up(trunk)
    (fax,) = fast.faxes
    session = await fast.bank.verify_corporate(SHORT, SHORT_PIN)
    statement = await fast.bank.statement(session, since, banking.MAX_STATEMENT)
    assert fax.statement.lines == statement.lines and len(statement.lines) <= banking.MAX_STATEMENT
    assert fax.statement.holder == "上海东方贸易有限公司" and fax.fax_number == "02187654321"
    assert pieces(command) == ["statement-lines"] + say.number(len(statement.lines), "zh") + ["fax-will-be-sent"]


@pytest_twisted.ensureDeferred
async def test_corporate_query_password_change(fast):
    """Corporate, 5: the query password changes (corporate customers may)."""
    trunk = fast.call(CORPORATE + "5" + SHORT_PIN + "#135790#135790#")
    await fast.until_command(trunk, "password-changed")
    end = await fast.hang_up(trunk)
    assert end.path.startswith("main>corporate>password")
    assert await fast.bank.verify_corporate(SHORT, "135790")


# --- bills ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service, key, action, keys, paid_fen", [
    ("mobile", "2", "pay", "1", None),
    ("mobile", "2", "prepay", "2" + "50#", 5_000),
    ("electricity", "3", "pay", "1", None),
    ("water", "4", "prepay", "2" + "20*50#", 2_050),
])
@pytest_twisted.ensureDeferred
async def test_bill_payment_and_prepayment(fast, service, key, action, keys, paid_fen):
    """Signed, 4, service, bill number#: the amount due is said; 1 pays it, 2 prepays an amount."""
    number, due = BILLS[service]
    before = await account(fast, "1234")
    trunk = fast.call("14" + SIGNED + "#" + SIGNED_PIN + "#" + key + number + "#" + keys)
    said = await fast.until_command(trunk, "bill-amount-due")
    assert pieces(said) == ["bill-amount-due"] + say.money(due, "zh")
    done = await fast.until_command(trunk, "payment-done")
    await fast.hang_up(trunk)
    moved = due if paid_fen is None else paid_fen
    after, row = await account(fast, "1234"), await bill(fast, service)
    assert after.ledger_fen == before.ledger_fen - moved
    assert pieces(done) == ["payment-done", "balance-is"] + say.money(after.ledger_fen, "zh")
    assert (row.amount_due_fen, row.prepaid_fen) == ((0, 0) if action == "pay" else (due, paid_fen))


@pytest.mark.parametrize("script", [
    "14" + CARD + "#" + PIN + "#",  # a public customer's card where a signed one is asked
    PUBLIC + "9" + "4",             # verified as public, back to the main menu, then bills
], ids=["unverified", "public-session"])
@pytest_twisted.ensureDeferred
async def test_ordinary_customer_told_bills_need_signing(fast, script):
    """A public (unsigned) customer asking for bill payment hears that the service needs signing."""
    trunk = fast.call(script)
    await fast.until_command(trunk, "service-needs-signing")
    assert not any("bill-service-menu" in c for c in fast.commands(trunk))
    await fast.hang_up(trunk)


# --- information ---------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_exchange_rates(fast):
    """5, 2: each currency's buying and selling rates, read from the bank."""
    trunk = fast.call("152")
    await fast.daemon.until(lambda: sum("currency-" in c for c in fast.commands(trunk)) == len(EXCHANGE_RATES),
                            "every exchange rate", 60)
    assert any("exchange-rates-intro" in c for c in fast.commands(trunk))
    heard = [pieces(c) for c in fast.commands(trunk) if "currency-" in c]
    await fast.hang_up(trunk)
    assert heard == [[f"currency-{currency.lower()}", "buying"] + say.decimal(Decimal(buy), "zh") + ["selling"]
                     + say.decimal(Decimal(sell), "zh") for currency, buy, sell in EXCHANGE_RATES]


@pytest_twisted.ensureDeferred
async def test_product_introductions(fast):
    """5, 3: each product's recorded introduction (no text to speech configured)."""
    trunk = fast.call("153")
    await fast.daemon.until(lambda: sum("product-" in c for c in fast.commands(trunk)) == 3, "the products", 40)
    heard = [pieces(c) for c in fast.commands(trunk) if "product-" in c]
    await fast.hang_up(trunk)
    assert heard == [["product-card"], ["product-corporate"], ["product-wealth"]]


@pytest.mark.parametrize("key, code", [("1", "deposit"), ("2", "realname"), ("3", "fx")])
@pytest_twisted.ensureDeferred
async def test_policy_lookup(fast, key, code):
    """5, 4, policy: the bank's policy text by its recorded prompt."""
    trunk = fast.call("154" + key)
    command = await fast.until_command(trunk, f"policy-{code}")
    await fast.hang_up(trunk)
    assert pieces(command) == [f"policy-{code}"]
