"""The IVR engine on the bank's flows, without sockets: a scripted session plays the caller, a small bank answers.

The session records every command (GET DATA with its prompt and whether it
is sensitive, Playback of concatenated pieces, SET VARIABLE …) and answers
GET DATA from the caller's list of keys; when the list runs out the caller
hangs up.  The bank is a tiny in-test ICoreBanking with one card customer.
"""

import pathlib
from datetime import datetime

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from ctid import banking
from ctid.ivr.call import IVRHooks
from ctid.ivr.engine import IVREngine
from ctid.ivr.loader import load_library
from ctid.protocols.agiwire import AGICommandError, AGIEnvironment, AGIHangupError, AGIReply
from ctid.protocols.fastagi import ScriptRouter

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY = load_library(str(ROOT / "conf" / "ivr"), str(ROOT / "conf" / "prompts" / "manifest.yaml"))
CARD, PIN, OTHER = "6222020018881234", "888888", "6222020020005678"
NOW = datetime(2026, 3, 5, 10, 0)


class ScriptedSession:
    """An AGI session whose caller presses ``keys`` (one entry per GET DATA) and then hangs up."""

    def __init__(self, keys, fail_on=None):
        self.keys = list(keys)
        self.commands = []
        self.variables = {}
        self.hung_up = False
        self.last_reply = None
        self.fail_on = fail_on
        self.env = AGIEnvironment({"agi_channel": "PJSIP/trunk-00000001", "agi_uniqueid": "1700000000.1",
                                   "agi_callerid": "13800138000", "agi_dnid": "95566", "agi_network_script": "bank"})

    def log_fields(self):
        return {"agi_channel": self.env.channel}

    def _hang_up(self, command):
        self.hung_up = True
        raise AGIHangupError(f"caller hung up during {command}")

    async def answer(self):
        self.commands.append(("ANSWER",))

    async def get_data(self, filename, timeout_ms=5000, max_digits=None, *, sensitive=False):
        self.commands.append(("GET DATA", filename, sensitive))
        if not self.keys:
            self._hang_up("GET DATA")
        return self.keys.pop(0), False

    async def stream_file(self, filename, escape_digits="", offset=None, *, timeout=None):
        self.commands.append(("STREAM FILE", filename))
        if filename == self.fail_on:
            raise AGICommandError(-1, "failed", "STREAM FILE")

    async def execute(self, application, *args, timeout=None):
        self.commands.append(("EXEC", application, *args))
        return "0"

    async def set_variable(self, name, value, *, sensitive=False):
        self.commands.append(("SET VARIABLE", name, value))
        self.variables[name] = value

    async def record_file(self, filename, fmt="wav", escape_digits="#", timeout_ms=-1, *, offset=None, beep=True,
                          silence_s=None):
        self.commands.append(("RECORD FILE", filename))
        self.last_reply = AGIReply(200, "-1" if not self.keys else "35", "hangup" if not self.keys else "dtmf",
                                   {"endpos": "40000"})
        if not self.keys:
            self._hang_up("RECORD FILE")
        return self.last_reply

    async def hangup(self, channel=None):
        self.commands.append(("HANGUP",))

    def played(self):
        """Prompt names played or asked with, in order (directory stripped)."""
        return [c[1].rsplit("/", 1)[1] for c in self.commands if c[0] in ("GET DATA", "STREAM FILE")]

    def playbacks(self):
        return [[name.rsplit("/", 1)[1] for name in c[2].split("&")] for c in self.commands if c[0] == "EXEC"]


class SmallBank:
    """One signed customer with a card and a passbook; ``failure`` makes every call fail with it."""

    def __init__(self, failure=None, hold=False):
        self.failure = failure
        self.hold = hold
        self.closed = []
        self.seen = []
        own = (banking.OwnAccount("A1", "card", "**** **** **** 1234"),
               banking.OwnAccount("A2", "passbook", "**** **** **** 5678"))
        self.session = banking.Session("tok", "signed", "C0001", "王建国", own[0], own, datetime(2030, 1, 1))

    def _answer(self, value):
        if self.hold:
            return Deferred()
        return fail(self.failure) if self.failure else succeed(value)

    def verify_signed(self, number, password):
        self.seen.append(("verify_signed", number, password))
        if (number, password) != (CARD, PIN) and not self.failure:
            return fail(banking.BadCredentials(2))
        return self._answer(self.session)

    verify_public = verify_signed

    def close(self, session):
        self.closed.append(session.token)
        return succeed(None)

    def balance(self, session):
        return self._answer(banking.Balance("**** **** **** 1234", "CNY", 120_350, 100_000))

    def recent_transactions(self, session, limit=10):
        return self._answer((banking.Transaction(NOW, -5_000, 115_350, "ATM", "R1"),))

    def transfer(self, session, to_ref, amount_fen):
        self.seen.append(("transfer", to_ref, amount_fen))
        return self._answer(banking.Receipt("RRN1", amount_fen, 20_350, NOW))

    def can_change_password(self, session):
        return self._answer(False)


@pytest.fixture
def ended():
    return []


def engine_for(bank, ended, clock=None, messages=None):
    hooks = IVRHooks(on_flow_end=ended.append, on_voice_message=(messages if messages is not None else []).append)
    return IVREngine(LIBRARY, bank, clock or Clock(), hooks=hooks, default_language="zh", voice_dir="/v")


SIGNED_IN = ["1", "2", CARD, PIN]  # Chinese, signed customers, card number, password


@pytest_twisted.ensureDeferred
async def test_balance_said_by_prompt_concatenation_then_hang_up(ended):
    """Signed in, 1 for the balance: the amounts are spoken as pieces; the caller hangs up at the next menu."""
    session = ScriptedSession(SIGNED_IN + ["1"])
    await engine_for(SmallBank(), ended).run("bank", session)
    assert session.played()[:5] == ["choose-language", "main-menu", "enter-card-or-passbook-number",
                                    "enter-password", "account-menu"]
    assert session.playbacks() == [["balance-is", "num-1", "num-1000", "num-2", "num-100", "num-0", "num-3",
                                    "money-yuan", "num-5", "money-jiao", "available-is", "num-1", "num-1000",
                                    "money-yuan", "money-zheng"]]
    (end,) = ended
    assert (end.reason, end.node, end.path, end.verified, end.customer_id) == (
        "hangup", "account", "main>signed>account>balance", True, "C0001")


@pytest_twisted.ensureDeferred
async def test_secrets_stay_out_of_variables_and_logs(ended):
    """The card number and password are asked with sensitive GET DATA and never reach a variable or a log event."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        session = ScriptedSession(SIGNED_IN + ["0"])
        await engine_for(SmallBank(), ended).run("bank", session)
    finally:
        globalLogPublisher.removeObserver(events.append)
    sensitive = [c[1].rsplit("/", 1)[1] for c in session.commands if c[0] == "GET DATA" and c[2]]
    assert sensitive == ["enter-card-or-passbook-number", "enter-password"]
    assert session.variables == {
        "CTID_MENU": "agent", "CTID_PATH": "main>signed>account>agent", "CTID_VERIFIED": "yes",
        "CTID_LANGUAGE": "zh", "CTID_CUSTOMER": "C0001", "CTID_ACCOUNT": "**** **** **** 1234",
        "CTID_SEGMENT": "signed"}
    text = repr(events)
    assert CARD not in text and PIN not in text and events
    assert ended[0].reason == "transfer" and ended[0].node == "agent"


@pytest_twisted.ensureDeferred
async def test_english_and_a_wrong_password(ended):
    """2 picks English prompts; a wrong password says so and asks for the number again."""
    bank = SmallBank()
    session = ScriptedSession(["2", "2", CARD, "111111"])
    await engine_for(bank, ended).run("bank", session)
    assert session.commands[2][1] == "ctid/en/main-menu"
    assert session.played()[-2:] == ["wrong-credentials", "enter-card-or-passbook-number"]
    assert bank.seen == [("verify_signed", CARD, "111111")]
    assert ended[0].verified is False


@pytest_twisted.ensureDeferred
async def test_lockout_is_told_politely_and_offers_an_agent(ended):
    """A locked account hears why, and 0 takes it to an agent, unverified."""
    session = ScriptedSession(SIGNED_IN + ["0"])
    await engine_for(SmallBank(failure=banking.AccountLocked()), ended).run("bank", session)
    assert session.played()[-3:] == ["account-locked", "offer-agent", "transferring-to-agent"]
    assert session.variables["CTID_VERIFIED"] == "no" and "CTID_CUSTOMER" not in session.variables
    assert session.variables["CTID_PATH"] == "main>signed>trouble>agent"


@pytest_twisted.ensureDeferred
async def test_host_down_gives_a_polite_message_and_an_agent(ended):
    """The bank being unreachable is a polite apology and the agent offer, not a dropped call."""
    session = ScriptedSession(SIGNED_IN + ["0"])
    await engine_for(SmallBank(failure=banking.HostUnavailable("down")), ended).run("bank", session)
    assert session.played()[-3:] == ["bank-unavailable", "offer-agent", "transferring-to-agent"]
    assert ended[0].reason == "transfer"


@pytest_twisted.ensureDeferred
async def test_host_timeout_on_the_engines_clock(ended):
    """A bank that never answers is given up after operation_timeout seconds: the host-trouble path."""
    clock = Clock()
    session = ScriptedSession(SIGNED_IN + ["0"])
    running = Deferred.fromCoroutine(engine_for(SmallBank(hold=True), ended, clock).run("bank", session))
    assert not running.called
    clock.advance(10)
    await running
    assert "bank-unavailable" in session.played()


@pytest_twisted.ensureDeferred
async def test_transfer_between_own_accounts(ended):
    """Signed: 7, last 4 of the other account, an amount with * as the point, confirm: the bank moves it."""
    bank = SmallBank()
    session = ScriptedSession(SIGNED_IN + ["7", "5678", "100*5", "1"])
    await engine_for(bank, ended, Clock()).run("bank", session)
    assert bank.seen[-1] == ("transfer", "A2", 10_050)
    assert session.playbacks()[0] == ["transfer-to-account-ending", "num-5", "num-6", "num-7", "num-8",
                                      "transfer-amount-is", "num-1", "num-100", "money-yuan", "num-5", "money-jiao"]
    assert session.playbacks()[1][:2] == ["transfer-done", "balance-is"]


@pytest_twisted.ensureDeferred
async def test_password_change_not_offered_by_the_bank(ended):
    """When the bank does not allow it: 'please change it at a counter or ATM'."""
    session = ScriptedSession(SIGNED_IN + ["5"])
    await engine_for(SmallBank(), ended).run("bank", session)
    assert "change-password-at-counter" in session.played()


@pytest_twisted.ensureDeferred
async def test_invalid_inputs_are_asked_again_then_go_to_an_agent(ended):
    """A bad menu key replays with the invalid prompt; three bad passwords end at the agent."""
    session = ScriptedSession(["1", "7", "2", CARD, "12", "12", "12"])
    await engine_for(SmallBank(), ended).run("bank", session)
    assert session.played()[:3] == ["choose-language", "main-menu", "invalid-choice"]
    assert session.played()[-3:] == ["invalid-password-format", "enter-password", "transferring-to-agent"]
    assert session.variables["CTID_PATH"] == "main>signed"


@pytest_twisted.ensureDeferred
async def test_voice_message_reported_even_when_the_caller_hangs_up(ended):
    """6, 1: a message is recorded; the caller hanging up during it still reports the recording."""
    messages = []
    session = ScriptedSession(["1", "6", "1"])
    await engine_for(SmallBank(), ended, Clock(), messages).run("bank", session)
    (message,) = messages
    assert (message.mailbox, message.seconds, message.node, message.call_id) == (
        "message", 5.0, "leave_message", "1700000000.1")
    assert message.path.startswith("/v/message-") and message.path.endswith("-1700000000.1")
    assert ended[0].reason == "hangup" and ended[0].node == "leave_message"


@pytest_twisted.ensureDeferred
async def test_an_unexpected_failure_hands_the_caller_to_an_agent(ended):
    """A prompt the switch cannot play stops the flow; the caller is handed over, not dropped."""
    session = ScriptedSession(SIGNED_IN + ["8"], fail_on="ctid/zh/account-help")
    await engine_for(SmallBank(), ended).run("bank", session)
    assert ended[0].reason == "error" and ended[0].node == "account_help"
    assert session.variables["CTID_VERIFIED"] == "yes"


@pytest_twisted.ensureDeferred
async def test_running_calls_keep_their_flow_across_a_reload(ended, tmp_path):
    """A call that started before a reload finishes on its flow; a new call gets the new one."""
    folder = tmp_path / "ivr"
    folder.mkdir()
    (folder / "bank.yaml").write_text("flow: bank\nstart: bye\nnodes:\n  bye:\n    type: hangup\n"
                                      "    prompt: message-saved-goodbye\n")
    new = load_library(str(folder), str(ROOT / "conf" / "prompts" / "manifest.yaml"))
    engine = engine_for(SmallBank(), ended)
    router = ScriptRouter({"wait": object()})
    engine.serve(router)
    gate = Deferred()
    old_session = ScriptedSession(["1"])
    original = old_session.get_data

    async def slow_get_data(*args, **kwargs):
        await gate
        return await original(*args, **kwargs)

    old_session.get_data = slow_get_data
    first = Deferred.fromCoroutine(router.routes["bank"](old_session))
    engine.update(new)
    second = ScriptedSession([])
    await router.routes["bank"](second)
    assert second.played() == ["message-saved-goodbye"] and ended[-1].reason == "completed"
    gate.callback(None)
    await first
    assert old_session.played()[:2] == ["choose-language", "main-menu"]
    assert set(router.routes) == {"wait", "bank"}


def test_engine_from_settings_and_reconfigured():
    """The [ivr] settings build the engine; a reload applies flows, language and timeout; no flows keeps the old."""
    from ctid.config import IVRSettings

    settings = IVRSettings(flows="ivr", default_language="en", operation_timeout=3.0, library=LIBRARY)
    engine = IVREngine.from_settings(settings, SmallBank(), Clock())
    assert (engine.name, engine.default_language, engine.library) == ("ivr", "en", LIBRARY)
    engine.configure(IVRSettings(flows="ivr", default_language="zh", operation_timeout=5.0, library=LIBRARY))
    assert engine.default_language == "zh" and engine._settings["operation_timeout"] == 5.0
    engine.configure(IVRSettings())
    assert engine.library is LIBRARY
