"""The bank's IVR end to end: simulated callers key DTMF through the simulated switch, over real FastAGI,
against the sandbox bank (SQLite, behind the lockout guard).

Prompts play in real time in the simulator, so each test waits for the AGI
command that proves the path (the Playback of an amount, a prompt, a
hand-off) rather than for every prompt to finish, then lets the caller go.
"""

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from ctid import banking
from ctid.adapters.corebank.guard import GuardedBank
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import DEMO_BILLS, DEMO_CUSTOMERS, seed_bank
from ctid.adapters.pbxsim import population
from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool
from ctid.calls import CallEnded
from ctid.client import CTIClient
from ctid.ivr import say
from ctid.ivr.call import IVRHooks
from tests.e2e import PASSWORD, Daemon, daemon_config

KEY = "ivr-e2e-sandbox-key-0123"
CARD, PIN = population.DEMO_CARD
SIGNED, SIGNED_PIN = population.DEMO_SIGNED
SHORT, SHORT_PIN = population.DEMO_CORPORATE


class BankLine:
    """The daemon with the bank's flows, a seeded sandbox bank, and what the IVR reported."""

    def __init__(self, daemon, bank, pool):
        self.daemon, self.bank, self.pool = daemon, bank, pool
        self.ends, self.messages, self.faxes = [], [], []
        self.engine = daemon.root.getServiceNamed("ivr")
        self.engine.bank = bank
        self.engine.hooks = IVRHooks(self.ends.append, self.messages.append, self.faxes.append)
        self.switch = EventRecorder(daemon.world)

    def call(self, script, number="13800138000"):
        return self.daemon.call_in(number, "95566", script=script, patience=120)

    def commands(self, trunk):
        return [e.get("Command") for e in self.switch.of("AGIExecStart", Channel=trunk.name)]

    async def until_command(self, trunk, text, timeout=40.0):
        """Wait for an AGI command on ``trunk`` containing ``text``; returns it."""
        found = await self.daemon.until(lambda: [c for c in self.commands(trunk) if text in c],
                                        f"an AGI command with {text!r}", timeout)
        return found[0]

    async def hang_up(self, trunk):
        if not trunk.dead:
            self.daemon.world.remote_hangup(trunk, 16)
        ends = await self.daemon.until(lambda: [e for e in self.ends if e.call.uniqueid == trunk.uniqueid],
                                       "the IVR to report the end of the flow")
        return ends[0]


@pytest_twisted.async_yield_fixture
async def line(tmp_path):
    daemon = Daemon(daemon_config(tmp_path, ivr=True, patience="120 120", talk_time="60 60"))
    await daemon.start()
    pool = DatabasePool(make_engine(f"sqlite:///{tmp_path / 'bank.sqlite'}"), reactor, name="bank-db",
                        max_threads=2)
    pool.startService()
    sandbox = SandboxBank(pool, KEY, reactor)
    await sandbox.create_tables()
    await pool.run(seed_bank, KEY, 1, 3, None, 16)
    yield BankLine(daemon, GuardedBank(sandbox, reactor, max_attempts=2), pool)
    if pool.running:
        await pool.stopService()
    await daemon.stop()


def pieces(command):
    """The prompt names of an ``EXEC Playback a&b&c`` command line."""
    files = command.split('"')[3]
    return [name.rsplit("/", 1)[1] for name in files.split("&")]


def test_the_simulators_demo_numbers_are_the_sandbox_banks():
    """The simulated callers' cards and passwords are demo customers of the sandbox bank."""
    demo = {(a.number, a.password) for c in DEMO_CUSTOMERS for a in c.accounts}
    demo |= {(a.short, a.password) for c in DEMO_CUSTOMERS for a in c.accounts if a.short}
    assert {population.DEMO_CARD, population.DEMO_PASSBOOK, population.DEMO_SIGNED,
            population.DEMO_CORPORATE} <= demo


@pytest_twisted.ensureDeferred
async def test_public_card_balance_spoken_and_no_secret_logged(line):
    """1 (中文), 1 public, 1 card, number#, password#, 1: the balance is spoken in pieces; no log holds a secret."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        trunk = line.call("111" + CARD + "#" + PIN + "#1")
        command = await line.until_command(trunk, "balance-is")
        end = await line.hang_up(trunk)
    finally:
        globalLogPublisher.removeObserver(events.append)
    session = await line.bank.verify_public(CARD, PIN)
    balance = await line.bank.balance(session)
    assert pieces(command) == (["balance-is"] + say.money(balance.ledger_fen, "zh") + ["available-is"]
                               + say.money(balance.available_fen, "zh"))
    assert command.startswith('EXEC "Playback" "ctid/zh/balance-is&')
    assert end.path == "main>public>card>account>balance" and end.verified
    assert events and CARD not in repr(events) and PIN not in repr(events)
    assert not any(CARD in str(v) or PIN in str(v) for v in trunk.variables.values())


@pytest_twisted.ensureDeferred
async def test_zero_goes_to_an_agent_with_the_screen_pop(line):
    """Signed customer verified, then 0: the agent's pop carries the customer, the masked account and the path."""
    client = CTIClient(reactor, name="test-ivr/1", retry_policy=lambda attempt: 0.05)
    await client.connect(f"tcp:127.0.0.1:{line.daemon.port('cti')}")
    events = []
    client.on_event(None, events.append)
    await client.call("Login", agent="1001", password=PASSWORD, station="1001")
    await client.call("SetAgentState", state="ready")
    trunk = line.call("12" + SIGNED + "#" + SIGNED_PIN + "#0")
    pop = await line.daemon.until(lambda: [e.data for e in events if e.name == "Delivered"], "the screen pop", 60)
    data = pop[0]["data"]
    assert data["CTID_CUSTOMER"] == "C0001" and data["CTID_VERIFIED"] == "yes"
    assert data["CTID_ACCOUNT"].endswith("1234") and SIGNED not in data["CTID_ACCOUNT"]
    assert (data["CTID_PATH"], data["CTID_MENU"], data["CTID_SEGMENT"]) == ("main>signed>account>agent", "agent",
                                                                            "signed")
    assert line.ends[0].reason == "transfer"
    await line.daemon.until(lambda: line.daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end", 90)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_hang_up_mid_flow_is_recorded_where_it_stopped(line):
    """A caller who hangs up while keying the password ends the flow cleanly at that node."""
    trunk = line.call("12" + SIGNED + "#")
    await line.until_command(trunk, "enter-password")
    end = await line.hang_up(trunk)
    assert (end.reason, end.node, end.path, end.verified) == ("hangup", "signed_password", "main>signed", False)


@pytest_twisted.ensureDeferred
async def test_wrong_passwords_lock_the_account(line):
    """A wrong password is told; the second locks the account (guard at 2): the caller hears it politely."""
    wrong = "1" + CARD + "#000000#"
    trunk = line.call("11" + wrong + wrong)
    await line.until_command(trunk, "account-locked", timeout=90)
    assert sum("wrong-credentials" in c for c in line.commands(trunk)) == 1
    end = await line.hang_up(trunk)
    assert not end.verified and end.path == "main>public>card"
    with pytest.raises(banking.AccountLocked):
        await line.bank.verify_public(CARD, PIN)


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_bank_down_is_an_apology_and_an_agent(line):
    """With the bank's database gone the caller hears an apology, presses 0 and is handed over unverified."""
    await line.pool.stopService()
    trunk = line.call("12" + SIGNED + "#" + SIGNED_PIN + "#0")
    await line.until_command(trunk, "bank-unavailable")
    await line.until_command(trunk, "CTID_VERIFIED")
    end = await line.daemon.until(lambda: line.ends, "the hand-off")
    assert (end[0].reason, end[0].path) == ("transfer", "main>signed>trouble>agent")
    assert line.daemon.world.get_var(trunk, "CTID_VERIFIED") == "no"
    await line.hang_up(trunk)


@pytest_twisted.ensureDeferred
async def test_corporate_balance(line):
    """3: short account and query password open the corporate menu; 1 speaks the balance."""
    trunk = line.call("13" + SHORT + "#" + SHORT_PIN + "#1")
    await line.until_command(trunk, "balance-is")
    end = await line.hang_up(trunk)
    assert end.path == "main>corporate>balance" and end.customer_id == "C0002"


@pytest_twisted.ensureDeferred
async def test_phone_bill_of_a_signed_customer(line):
    """4: a signed customer queries the fixed-line bill; the amount due is spoken; 1 pays it."""
    service, number, _, due = DEMO_BILLS[0]
    trunk = line.call("14" + SIGNED + "#" + SIGNED_PIN + "#1" + number + "#1")
    command = await line.until_command(trunk, "bill-amount-due")
    assert pieces(command) == ["bill-amount-due"] + say.money(due, "zh")
    await line.until_command(trunk, "payment-done")
    end = await line.hang_up(trunk)
    assert end.path == "main>bills>phone>bill>pay"


@pytest_twisted.ensureDeferred
async def test_interest_rates_in_english(line):
    """2 (English), 5, 1: the rates are read from the bank with English pieces."""
    trunk = line.call("251")
    command = await line.until_command(trunk, "rate-")
    assert "ctid/en/rate-" in command and "percent" in command
    await line.hang_up(trunk)


@pytest_twisted.ensureDeferred
async def test_complaint_left_as_a_voice_message(line):
    """6, 2: a complaint is recorded and reported; the IVR thanks the caller and hangs up."""
    trunk = line.call("162")
    await line.daemon.until(lambda: line.messages, "the recorded complaint", 40)
    (message,) = line.messages
    assert (message.mailbox, message.call_id, message.caller) == ("complaint", trunk.uniqueid, "13800138000")
    assert message.seconds > 0
    end = await line.daemon.until(lambda: line.ends, "the goodbye")
    assert (end[0].reason, end[0].node) == ("completed", "goodbye")
