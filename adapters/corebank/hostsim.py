"""A simulated core-banking host speaking ctid's ISO 8583 dialect, backed by the sandbox bank.

:class:`HostSimulator` answers each request by calling a
:class:`~.sandbox.SandboxBank`: it decrypts PIN blocks with the shared key,
maps the bank's errors to response codes, journals financial trades by
(terminal, MTI, STAN, transmission time) and undoes them on a reversal
advice (0420/0421, always acknowledged).  :class:`HostSimulatorFactory`
serves it over any stream endpoint, one :class:`HostSimProtocol` per
connection.

:class:`Faults` switches misbehaviour on for tests and demos: answer late
(``delay``), never answer (``drop``; reversals still answered unless
``drop_reversals``), answer everything with one response code without doing
anything (``response_code``, e.g. ``"96"``), or answer with garbage frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.basic import Int16StringReceiver

from ctid.adapters.corebank import pinblock, wire
from ctid.adapters.corebank.iso8583 import (
    APPROVED,
    BY_CODE,
    MAX_FRAME,
    REVERSAL,
    REVERSAL_REPEAT,
    FrameError,
    code_for,
    decode,
    encode,
    params,
    response_mti,
    to_json,
)
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.banking import CoreBankingError, InvalidRequest, SessionExpired

log = Logger()

#: Request fields a response echoes.
_ECHOED = ("3", "4", "7", "11", "41", "49")


@dataclass
class Faults:
    """Misbehaviour switches (all off by default); change them at any time."""

    delay: float = 0.0
    drop: bool = False
    drop_reversals: bool = False
    response_code: str | None = None
    garbage: bool = False


class HostSimulator:
    """The host's logic over a sandbox bank; ``pin_key`` from :func:`.pinblock.parse_key`."""

    def __init__(self, bank: SandboxBank, pin_key: bytes, clock):
        self.bank = bank
        self.faults = Faults()
        self.clock = clock
        self.counts = dict(requests=0, malformed=0, reversals=0, reversed=0)
        self._key = pin_key
        self._journal: dict[tuple[str, str], Deferred[str | None]] = {}

    async def respond(self, fields: dict[str, str]) -> dict[str, str]:
        """The answer's fields for a request's fields (never raises)."""
        self.counts["requests"] += 1
        answer = {key: fields[key] for key in _ECHOED if key in fields}
        answer["t"] = response_mti(fields["t"])
        if self.faults.response_code is not None:
            answer["39"] = self.faults.response_code
            return answer
        try:
            if fields["t"] in (REVERSAL, REVERSAL_REPEAT):
                await self._reversal(fields)
                answer["39"] = APPROVED
            else:
                answer.update(await self._operation(fields))
                answer.setdefault("39", APPROVED)
        except CoreBankingError as e:
            answer["39"] = code_for(e)
        except (FrameError, pinblock.PinBlockError, KeyError, ValueError, TypeError):
            answer["39"] = "30"
        except Exception:
            log.failure("host simulator: request failed")
            answer["39"] = "96"
        return answer

    # -- reversals --------------------------------------------------------------------------------------------

    def _trade_key(self, fields: dict[str, str]) -> tuple[str, str]:
        return fields.get("41", ""), f"{fields['t']}{fields['11']}{fields['7']}"

    async def _reversal(self, fields: dict[str, str]) -> None:
        self.counts["reversals"] += 1
        pending = self._journal.pop((fields.get("41", ""), fields["90"][:20]), None)
        reference = None
        if pending is not None:
            reference = await pending
        if reference is not None and await self.bank.reverse(reference):
            self.counts["reversed"] += 1
            log.info("host simulator: trade {reference} reversed", reference=reference)

    # -- operations -------------------------------------------------------------------------------------------

    async def _operation(self, fields: dict[str, str]) -> dict[str, str]:
        op = BY_CODE.get((fields["t"], fields.get("3", "")))
        if op is None:
            raise InvalidRequest("unknown operation")
        if op.reversible:
            journalled: Deferred[str | None] = Deferred()
            self._journal[self._trade_key(fields)] = journalled
            try:
                answer = await self._run(op.name, fields)
            except BaseException:
                journalled.callback(None)
                raise
            journalled.callback(answer.get("37"))
            return answer
        return await self._run(op.name, fields)

    def _pin(self, fields: dict[str, str], field: str, digits: str | None) -> str:
        return pinblock.decrypt(fields[field], digits, self._key)

    async def _run(self, name: str, fields: dict[str, str]) -> dict[str, str]:
        bank, query = self.bank, params(fields)
        if name.startswith("verify_"):
            digits = fields["102" if name == "verify_corporate" else "2"]
            session = await getattr(bank, name)(digits, self._pin(fields, "52", digits))
            return {"62": session.token, "63": to_json(wire.session_data(session))}
        if name in ("interest_rates", "exchange_rates", "products", "policies"):
            return {"63": to_json(wire.info_data(await getattr(bank, name)()))}
        if name == "policy":
            return {"63": to_json(wire.info_data((await bank.policy(query["code"]),)))}
        session = bank.session(fields.get("62", ""))
        if session is None:
            raise SessionExpired("unknown session")
        return await self._account_operation(name, session, fields, query)

    async def _account_operation(self, name, session, fields, query) -> dict[str, str]:
        bank = self.bank
        amount = int(fields["4"]) if "4" in fields else None
        since = date.fromisoformat(query["since"]) if "since" in query else None
        if name == "close":
            await bank.close(session)
            return {}
        if name == "balance":
            return {"63": to_json(wire.balance_data(await bank.balance(session)))}
        if name in ("recent_transactions", "transactions_since", "transactions_by_amount"):
            args = {"recent_transactions": (), "transactions_since": (since,),
                    "transactions_by_amount": (amount,)}[name]
            lines = await getattr(bank, name)(session, *args, limit=query["limit"])
            return {"63": to_json(wire.lines_data(lines))}
        if name == "statement":
            statement = await bank.statement(session, since, limit=query["limit"])
            return {"63": to_json(wire.statement_data(statement))}
        if name == "can_change_password":
            return {"63": to_json({"allowed": await bank.can_change_password(session)})}
        if name == "change_password":
            await bank.change_password(session, self._pin(fields, "52", None), self._pin(fields, "120", None))
            return {}
        if name == "report_loss":
            report = await bank.report_loss(session, query.get("id_type"), query.get("id_number"))
            return {"37": report.reference, "63": to_json(wire.loss_data(report))}
        if name == "query_bill":
            bill = await bank.query_bill(session, query["service"], query["number"])
            return {"63": to_json(wire.bill_data(bill))}
        if name == "transfer":
            receipt = await bank.transfer(session, fields["103"], amount)
        else:  # pay_bill, prepay
            receipt = await getattr(bank, name)(session, query["service"], query["number"], amount)
        return {"37": receipt.reference, "63": to_json(wire.receipt_data(receipt))}


class HostSimProtocol(Int16StringReceiver):
    """One client connection to the simulated host: frames in, answers out (subject to the faults)."""

    MAX_LENGTH = MAX_FRAME

    def __init__(self, simulator: HostSimulator):
        self.simulator = simulator

    def stringReceived(self, data: bytes) -> None:
        """Decode a request and answer it (concurrently with other requests on this connection)."""
        try:
            fields = decode(data)
            if not fields["t"].isdigit():
                raise FrameError("malformed MTI")
        except FrameError as e:
            self.simulator.counts["malformed"] += 1
            log.warn("host simulator: malformed request dropped: {error}", error=str(e))
            return
        d = Deferred.fromCoroutine(self.simulator.respond(fields))
        d.addCallback(self._answer, fields["t"])
        d.addErrback(lambda failure: log.failure("host simulator: answering failed", failure))

    def _answer(self, answer: dict[str, str], mti: str) -> Deferred | None:
        faults = self.simulator.faults
        reversal = mti in (REVERSAL, REVERSAL_REPEAT)
        if faults.drop_reversals if reversal else faults.drop:
            return None
        data = b"\x00garbage" if faults.garbage else encode(answer)
        if faults.delay > 0:
            return deferLater(self.simulator.clock, faults.delay, self._send, data)
        self._send(data)
        return None

    def _send(self, data: bytes) -> None:
        if self.transport is not None and self.connected:
            self.sendString(data)


class HostSimulatorFactory(Factory):
    """Builds a :class:`HostSimProtocol` per connection, all sharing one :class:`HostSimulator`."""

    def __init__(self, simulator: HostSimulator):
        self.simulator = simulator

    def buildProtocol(self, addr) -> HostSimProtocol:
        protocol = HostSimProtocol(self.simulator)
        protocol.factory = self
        return protocol
