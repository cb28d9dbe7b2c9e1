"""The sandbox bank's tables: its own MetaData, created with ``create_all`` in its own database.

Nothing secret is stored in clear: card, passbook and short account numbers
are a keyed hash (``HMAC-SHA256(account_key, digits)``, hex) plus the last 4
digits; passwords and ID numbers are a slow salted hash (scrypt, as
:mod:`ctid.adapters.directory` does).  Money is integer fen (BigInteger);
times are naive bank-local times (UTC+8, see :data:`BANK_TZ`).
"""

from __future__ import annotations

from datetime import timedelta, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

#: The bank's clock: China Standard Time (no daylight saving).
BANK_TZ = timezone(timedelta(hours=8), "CST")

metadata = MetaData()

customers = Table(
    "bank_customers", metadata,
    Column("customer_id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("corporate", Boolean, nullable=False, default=False),
    Column("signed", Boolean, nullable=False, default=False),
    Column("id_type", String(20), nullable=True),
    Column("id_hash", String(120), nullable=True),  # scrypt of the ID number
)

accounts = Table(
    "bank_accounts", metadata,
    Column("ref", String(16), primary_key=True),
    Column("customer_id", String(16), ForeignKey("bank_customers.customer_id"), nullable=False),
    Column("kind", String(12), nullable=False),  # card | passbook | corporate
    Column("number_hash", String(64), nullable=False, unique=True),  # HMAC of the full number
    Column("short_hash", String(64), nullable=True, unique=True),  # HMAC of a corporate short account number
    Column("last4", String(4), nullable=False),
    Column("password_hash", String(120), nullable=False),
    Column("currency", String(3), nullable=False, default="CNY"),
    Column("ledger_fen", BigInteger, nullable=False, default=0),
    Column("available_fen", BigInteger, nullable=False, default=0),
    Column("frozen", Boolean, nullable=False, default=False),
)
Index("bank_accounts_customer", accounts.c.customer_id)

transactions = Table(
    "bank_transactions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_ref", String(16), ForeignKey("bank_accounts.ref"), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("balance_fen", BigInteger, nullable=False),
    Column("description", String(60), nullable=False),
    Column("reference", String(12), nullable=False),
)
Index("bank_transactions_account_at", transactions.c.account_ref, transactions.c.at)

#: The bank's own journal of state-changing trades, so a reversal can undo exactly one of them.
trades = Table(
    "bank_trades", metadata,
    Column("reference", String(12), primary_key=True),
    Column("kind", String(16), nullable=False),  # transfer | pay_bill | prepay | password | loss
    Column("account_ref", String(16), ForeignKey("bank_accounts.ref"), nullable=False),
    Column("amount_fen", BigInteger, nullable=False, default=0),
    Column("at", DateTime, nullable=False),
    Column("to_ref", String(16), nullable=True),  # a transfer's credited account
    Column("bill_service", String(12), nullable=True),
    Column("bill_number", String(20), nullable=True),
    Column("previous_hash", String(120), nullable=True),  # the password hash a password change replaced
    Column("reversed", Boolean, nullable=False, default=False),
)

bills = Table(
    "bank_bills", metadata,
    Column("service", String(12), primary_key=True),
    Column("number", String(20), primary_key=True),
    Column("payee", String(60), nullable=False),
    Column("period", String(20), nullable=False),
    Column("amount_due_fen", BigInteger, nullable=False),
    Column("prepaid_fen", BigInteger, nullable=False, default=0),
    Column("due", Date, nullable=True),
)

interest_rates = Table(
    "bank_interest_rates", metadata,
    Column("product", String(40), primary_key=True),
    Column("term", String(20), primary_key=True),
    Column("rate_percent", Numeric(6, 3), nullable=False),
    Column("position", Integer, nullable=False),
)

exchange_rates = Table(
    "bank_exchange_rates", metadata,
    Column("currency", String(3), primary_key=True),
    Column("buy", Numeric(10, 4), nullable=False),
    Column("sell", Numeric(10, 4), nullable=False),
    Column("position", Integer, nullable=False),
)

products = Table(
    "bank_products", metadata,
    Column("code", String(16), primary_key=True),
    Column("name", String(60), nullable=False),
    Column("summary", Text, nullable=False),
)

policies = Table(
    "bank_policies", metadata,
    Column("code", String(16), primary_key=True),
    Column("title", String(100), nullable=False),
    Column("text", Text, nullable=False),
)
