"""The core-banking operations a flow's ``operation`` node may call, by name.

Each operation reads what the caller typed (plain ``vars`` or ``secrets``),
calls :class:`~ctid.banking.ICoreBanking`, stores the result in ``vars``
under a documented name and returns an outcome: ``ok``, or the reason it did
not work.  Bank errors become outcomes (:func:`outcome_of`), so a flow says
sorry politely instead of failing; every operation may end ``host_error``,
``invalid`` or ``rejected``, those on the verified account also
``session_expired`` and ``not_verified``.

==========================  ===============================================  ==========================
operation                   reads                                            writes
==========================  ===============================================  ==========================
verify_public/_signed       secrets number, password                         customer (kind, signed)
verify_corporate            secrets short_account, password                  customer
balance                                                                      balance
recent_transactions                                                          transactions (newest first)
transactions_since          since (a date input)                             transactions (oldest first)
transactions_by_amount      amount (an amount input, fen)                    transactions
fax_statement               since, fax_number                                statement_lines
password_change_allowed     (outcome ``not_allowed`` when the bank says no)
change_password             secrets old_password, new_password, new_again
report_loss                 id_type (a digit of ID_TYPES), secrets id_number loss
transfer                    to_last4, amount                                 receipt
query_bill                  service, bill_number                             bill
pay_bill                    service, bill_number, bill                       receipt
prepay                      service, bill_number, amount                     receipt
interest_rates / exchange_  rates / fx / products
rates / products
policy                      policy_code                                      policy
==========================  ===============================================  ==========================
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ctid import banking
from ctid.banking import CoreBankingError, HostError, ICoreBanking, TradeRejected
from ctid.ivr.call import FaxRequest, IVRCall

Run = Callable[[IVRCall, ICoreBanking], Coroutine[Any, Any, str | None]]
#: Outcomes any operation may end with.
COMMON = frozenset({"ok", "host_error", "invalid", "rejected"})
#: More outcomes of the operations on a verified account.
ON_SESSION = frozenset({"session_expired", "not_verified"})


@dataclass(frozen=True)
class Operation:
    """A named core-banking call: how to run it, its outcomes, whether it needs a verified caller."""

    run: Run
    outcomes: frozenset[str]
    needs_session: bool


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, outcomes: str = "", needs_session: bool = True) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        extra = frozenset(outcomes.split()) | (ON_SESSION if needs_session else frozenset())
        OPERATIONS[name] = Operation(run, COMMON | extra, needs_session)
        return run

    return register


def outcome_of(error: CoreBankingError) -> str:
    """The outcome a bank error becomes: ``host_error`` for any host failure, ``rejected`` for other refusals."""
    if isinstance(error, HostError):
        return "host_error"
    if isinstance(error, TradeRejected):
        return "rejected"
    return error.code


# --- verification --------------------------------------------------------------------------------------------------


async def _verified(call: IVRCall, bank: ICoreBanking, session: banking.Session) -> None:
    if call.banking is not None:
        await bank.close(call.banking)
    call.banking = session
    call.vars["customer"] = {"kind": session.kind, "signed": "yes" if session.signed else "no"}


async def _verify(call: IVRCall, bank: ICoreBanking, method: str, number_key: str) -> None:
    number, password = call.secrets.pop(number_key, ""), call.secrets.pop("password", "")
    session = await getattr(bank, method)(number, password)
    await _verified(call, bank, session)


@operation("verify_public", "bad_credentials locked", needs_session=False)
async def verify_public(call: IVRCall, bank: ICoreBanking) -> None:
    """A public customer's card or passbook and withdrawal password."""
    await _verify(call, bank, "verify_public", "number")


@operation("verify_signed", "bad_credentials locked not_signed", needs_session=False)
async def verify_signed(call: IVRCall, bank: ICoreBanking) -> None:
    """A signed personal customer's card or passbook and password."""
    await _verify(call, bank, "verify_signed", "number")


@operation("verify_corporate", "bad_credentials locked not_signed", needs_session=False)
async def verify_corporate(call: IVRCall, bank: ICoreBanking) -> None:
    """A corporate customer's short account number and query password."""
    await _verify(call, bank, "verify_corporate", "short_account")


# --- the verified account ------------------------------------------------------------------------------------------


@operation("balance")
async def balance(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["balance"] = await bank.balance(call.banking)


@operation("recent_transactions")
async def recent_transactions(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["transactions"] = await bank.recent_transactions(call.banking, banking.MAX_SPOKEN)


@operation("transactions_since")
async def transactions_since(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["transactions"] = await bank.transactions_since(call.banking, call.vars["since"], banking.MAX_SPOKEN)


@operation("transactions_by_amount")
async def transactions_by_amount(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["transactions"] = await bank.transactions_by_amount(call.banking, call.vars["amount"],
                                                                  banking.MAX_SPOKEN)


@operation("fax_statement")
async def fax_statement(call: IVRCall, bank: ICoreBanking) -> None:
    statement = await bank.statement(call.banking, call.vars["since"], banking.MAX_STATEMENT)
    call.vars["statement_lines"] = len(statement.lines)
    customer = call.banking.customer_id if call.banking else ""
    call.hooks.on_fax(FaxRequest(call.info, call.node, str(call.vars["fax_number"]), statement, customer))


@operation("password_change_allowed", "not_allowed")
async def password_change_allowed(call: IVRCall, bank: ICoreBanking) -> str:
    return "ok" if await bank.can_change_password(call.banking) else "not_allowed"


@operation("change_password", "bad_credentials locked password_change_not_allowed mismatch")
async def change_password(call: IVRCall, bank: ICoreBanking) -> str | None:
    old, new, again = (call.secrets.pop(key, "") for key in ("old_password", "new_password", "new_again"))
    if new != again:
        return "mismatch"
    await bank.change_password(call.banking, old, new)
    return None


@operation("report_loss", "identity_mismatch")
async def report_loss(call: IVRCall, bank: ICoreBanking) -> str | None:
    assert call.banking is not None  # needs a session: run on verified calls only
    if call.banking.signed:
        call.vars["loss"] = await bank.report_loss(call.banking)
        return None
    id_type = banking.ID_TYPES.get(str(call.vars.get("id_type", "")))
    if id_type is None:
        return "invalid"
    call.vars["loss"] = await bank.report_loss(call.banking, id_type, call.secrets.pop("id_number", ""))
    return None


@operation("transfer", "insufficient_funds not_signed no_such_account")
async def transfer(call: IVRCall, bank: ICoreBanking) -> str | None:
    last4 = str(call.vars.get("to_last4", ""))
    assert call.banking is not None  # needs a session: run on verified calls only
    own = [account for account in call.banking.accounts[1:] if account.masked.endswith(last4)]
    if len(last4) != 4 or len(own) != 1:
        return "no_such_account"
    call.vars["receipt"] = await bank.transfer(call.banking, own[0].ref, call.vars["amount"])
    return None


# --- intermediary business (signed customers) ----------------------------------------------------------------------


@operation("query_bill", "not_signed")
async def query_bill(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["bill"] = await bank.query_bill(call.banking, call.vars["service"], str(call.vars["bill_number"]))


@operation("pay_bill", "not_signed insufficient_funds")
async def pay_bill(call: IVRCall, bank: ICoreBanking) -> None:
    bill = call.vars["bill"]
    call.vars["receipt"] = await bank.pay_bill(call.banking, bill.service, bill.number, bill.amount_due_fen)


@operation("prepay", "not_signed insufficient_funds")
async def prepay(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["receipt"] = await bank.prepay(call.banking, call.vars["service"], str(call.vars["bill_number"]),
                                             call.vars["amount"])


# --- information (no verification) ---------------------------------------------------------------------------------


@operation("interest_rates", needs_session=False)
async def interest_rates(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["rates"] = await bank.interest_rates()


@operation("exchange_rates", needs_session=False)
async def exchange_rates(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["fx"] = await bank.exchange_rates()


@operation("products", needs_session=False)
async def products(call: IVRCall, bank: ICoreBanking) -> None:
    call.vars["products"] = await bank.products()


@operation("policy", "not_found", needs_session=False)
async def policy(call: IVRCall, bank: ICoreBanking) -> str | None:
    try:
        call.vars["policy"] = await bank.policy(str(call.vars.get("policy_code", "")))
    except TradeRejected as e:
        if e.code == "not_found":
            return "not_found"
        raise
    return None
