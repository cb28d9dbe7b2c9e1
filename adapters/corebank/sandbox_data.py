"""The sandbox bank's sample data: fixed demo customers plus customers generated from a seed.

:func:`seed_bank` runs in a database thread: it empties the sandbox tables and
writes the demo customers (:data:`DEMO_CUSTOMERS`, whose numbers and
passwords docs/corebank.md lists and ``scripts/ctid-seed-bank`` prints), then
``generated`` more customers with histories drawn from ``random.Random(seed)``,
bills, rates, product introductions and policies.  The same seed and ``now``
give the same data.  Numbers are stored as keyed hashes, passwords and ID
numbers as scrypt hashes (see :mod:`.sandbox_schema`).

The demo numbers match the screen-pop sample customers of ``scripts/ctid-seed``
(same customer ids and accounts), so a verified caller pops the right profile.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, insert
from sqlalchemy.engine import Connection

from ctid.adapters.corebank import sandbox_schema as s
from ctid.adapters.directory import SCRYPT_N, hash_password


@dataclass(frozen=True)
class DemoAccount:
    """A demo account: the full ``number`` and ``password`` are for people trying the flows (never stored)."""

    number: str
    kind: str
    password: str
    opening_fen: int
    short: str | None = None


@dataclass(frozen=True)
class DemoCustomer:
    """A demo customer and their accounts."""

    customer_id: str
    name: str
    signed: bool
    corporate: bool
    id_type: str | None
    id_number: str | None
    accounts: tuple[DemoAccount, ...]


#: Keys the hashes of the sandbox's numbers when none is configured: FOR THE SANDBOX ONLY.
SANDBOX_ACCOUNT_KEY = "ctid-sandbox-account-key"

#: The customers docs/corebank.md lists: FOR THE SANDBOX ONLY.
DEMO_CUSTOMERS = (
    DemoCustomer("C0003", "李秀英", False, False, "id_card", "110101199003071234",
                 (DemoAccount("6222020030004321", "card", "123456", 1_520_000),)),
    DemoCustomer("C0012", "吴明", False, False, "id_card", "510104198511112222",
                 (DemoAccount("6222020120005555", "passbook", "135790", 860_050),)),
    DemoCustomer("C0001", "王建国", True, False, "id_card", "310101197001011234",
                 (DemoAccount("6222020018881234", "card", "888888", 25_880_000),
                  DemoAccount("6222020020005678", "passbook", "888888", 5_000_000))),
    DemoCustomer("C0004", "张伟", True, False, "passport", "E12345678",
                 (DemoAccount("6222020040008765", "card", "246810", 3_300_000),)),
    DemoCustomer("C0002", "上海东方贸易有限公司", True, True, None, None,
                 (DemoAccount("31001234567890123456", "corporate", "666666", 1_234_567_800, short="80001"),
                  DemoAccount("31001234567890127890", "corporate", "666666", 50_000_000, short="80002"))),
)

#: (service, number, payee, amount due in fen): bills the demo customers can query and pay.
DEMO_BILLS = (
    ("phone", "02162345678", "中国电信上海分公司", 12_800),
    ("mobile", "13800138000", "中国移动上海分公司", 8_650),
    ("electricity", "3100123456", "国网上海市电力公司", 23_410),
    ("water", "3100654321", "上海城投水务", 6_720),
)

INTEREST_RATES = (
    ("demand", "-", "0.050"), ("time", "3m", "0.650"), ("time", "6m", "0.850"), ("time", "1y", "0.950"),
    ("time", "2y", "1.050"), ("time", "3y", "1.250"), ("time", "5y", "1.300"),
    ("loan_lpr", "1y", "3.000"), ("loan_lpr", "5y", "3.500"),
)
EXCHANGE_RATES = (
    ("USD", "718.5000", "721.5400"), ("EUR", "780.1200", "785.8600"), ("JPY", "4.8012", "4.8384"),
    ("HKD", "91.9500", "92.3100"), ("GBP", "905.1000", "911.7000"),
)
PRODUCTS = (
    ("card", "借记卡", "借记卡可在全国网点和自助设备存取款，支持网上支付和代缴费。"),
    ("wealth", "稳健理财", "稳健型理财产品，期限三个月至一年，起购金额一万元，过往业绩不代表未来表现。"),
    ("corporate", "对公结算", "对公客户可通过电话银行查询余额、明细，申请传真对帐单，办理本单位帐户间转帐。"),
)
POLICIES = (
    ("deposit", "存款保险条例", "存款保险实行限额偿付，最高偿付限额为人民币五十万元。"),
    ("realname", "个人存款账户实名制规定", "开立个人存款账户须出示本人有效身份证件，使用实名。"),
    ("fx", "个人外汇管理办法", "个人每年结汇和购汇的便利化额度为等值五万美元。"),
)

_CREDITS = ("转账存入", "利息", "现金存入")
_DEBITS = ("ATM取款", "消费", "转账支出", "水电费")
_SALARY_FEN = 850_000
_HISTORY_DAYS = 120


def number_hash(account_key: str, digits: str) -> str:
    """The keyed hash a card, passbook or short account number is stored (and found) by."""
    return hmac.new(account_key.encode("utf-8"), digits.encode("ascii"), hashlib.sha256).hexdigest()


def generated_customers(seed: int, count: int) -> list[DemoCustomer]:
    """``count`` public or signed personal customers drawn from ``seed`` (numbers 6222 03…, 6-digit passwords)."""
    rng = random.Random(seed)
    people = []
    for i in range(count):
        number = "622203" + "".join(rng.choice("0123456789") for _ in range(10))
        password = "".join(rng.choice("0123456789") for _ in range(6))
        kind = rng.choice(("card", "card", "passbook"))
        account = DemoAccount(number, kind, password, rng.randrange(100_000, 10_000_000))
        people.append(DemoCustomer(f"G{i + 1:04d}", f"客户{i + 1:04d}", rng.random() < 0.3, False, "id_card",
                                   f"3101011980{rng.randrange(10**8):08d}", (account,)))
    return people


def _history(rng: random.Random, opening_fen: int, now: datetime, salaried: bool) -> list[tuple[datetime, int, str]]:
    """Sorted (time, amount, description) entries ending before ``now``: an opening deposit, then activity."""
    start = now - timedelta(days=_HISTORY_DAYS)
    entries = [(start, opening_fen, "开户存入")]
    for day in range(1, _HISTORY_DAYS):
        at = (start + timedelta(days=day)).replace(hour=rng.randrange(8, 20), minute=rng.randrange(60), second=0,
                                                   microsecond=0)
        if at >= now:
            break
        if salaried and at.day == 10:
            entries.append((at, _SALARY_FEN, "工资"))
        if rng.random() < 0.35:
            credit = rng.random() < 0.3
            amount = rng.randrange(1_000, 300_000)
            entries.append((at, amount if credit else -amount, rng.choice(_CREDITS if credit else _DEBITS)))
    return entries


def _account_rows(customer: DemoCustomer, account: DemoAccount, ref: str, account_key: str, scrypt_n: int,
                  rng: random.Random, now: datetime) -> tuple[dict, list[dict]]:
    """The account row and its transaction rows (debits that would overdraw are skipped)."""
    balance = 0
    lines: list[dict] = []
    for at, amount, description in _history(rng, account.opening_fen, now, not customer.corporate):
        if balance + amount < 0:
            continue
        balance += amount
        lines.append(dict(account_ref=ref, at=at, amount_fen=amount, balance_fen=balance, description=description,
                          reference=f"H{ref[1:]}{len(lines):06d}"))
    row = dict(ref=ref, customer_id=customer.customer_id, kind=account.kind,
               number_hash=number_hash(account_key, account.number),
               short_hash=number_hash(account_key, account.short) if account.short else None,
               last4=account.number[-4:], password_hash=hash_password(account.password, n=scrypt_n),
               currency="CNY", ledger_fen=balance, available_fen=balance, frozen=False)
    return row, lines


def _wipe(connection: Connection) -> None:
    for table in reversed(s.metadata.sorted_tables):
        connection.execute(delete(table))


def seed_bank(connection: Connection, account_key: str, seed: int = 1, generated: int = 40,
              now: datetime | None = None, scrypt_n: int = SCRYPT_N) -> int:
    """In a database thread: replace the sandbox's data with the demo and generated customers; their count.

    ``now`` is bank-local naive time (default: the current time in
    :data:`~.sandbox_schema.BANK_TZ`); ``scrypt_n`` lowers the hashing cost for tests.
    """
    now = (now or datetime.now(s.BANK_TZ).replace(tzinfo=None)).replace(microsecond=0)
    rng = random.Random(seed)
    _wipe(connection)
    people = list(DEMO_CUSTOMERS) + generated_customers(seed, generated)
    account_rows, lines, serial = [], [], 0
    for customer in people:
        for account in customer.accounts:
            serial += 1
            row, history = _account_rows(customer, account, f"A{serial:05d}", account_key, scrypt_n, rng, now)
            account_rows.append(row)
            lines.extend(history)
    connection.execute(insert(s.customers), [
        dict(customer_id=c.customer_id, name=c.name, corporate=c.corporate, signed=c.signed, id_type=c.id_type,
             id_hash=hash_password(c.id_number, n=scrypt_n) if c.id_number else None) for c in people])
    connection.execute(insert(s.accounts), account_rows)
    connection.execute(insert(s.transactions), lines)
    _seed_reference_data(connection, now.date())
    return len(people)


def _seed_reference_data(connection: Connection, today: date) -> None:
    """Bills (due in two weeks), rates, product introductions and policies."""
    connection.execute(insert(s.bills), [
        dict(service=service, number=number, payee=payee, period=f"{today:%Y-%m}", amount_due_fen=amount,
             prepaid_fen=0, due=today + timedelta(days=14)) for service, number, payee, amount in DEMO_BILLS])
    connection.execute(insert(s.interest_rates), [
        dict(product=product, term=term, rate_percent=Decimal(rate), position=i)
        for i, (product, term, rate) in enumerate(INTEREST_RATES)])
    connection.execute(insert(s.exchange_rates), [
        dict(currency=currency, buy=Decimal(buy), sell=Decimal(sell), position=i)
        for i, (currency, buy, sell) in enumerate(EXCHANGE_RATES)])
    connection.execute(insert(s.products), [dict(code=c, name=n, summary=t) for c, n, t in PRODUCTS])
    connection.execute(insert(s.policies), [dict(code=c, title=n, text=t) for c, n, t in POLICIES])
