"""The bank's IVR end to end against the ISO 8583 host simulator: the daemon's own ``corebank`` service
(``backend = iso8583``, the real host client and its links) serves the flows; the simulated host on a loopback
port answers from a seeded sandbox bank.

Like tests/test_ivr_e2e.py, each test waits for the AGI command that proves the path, then lets the caller go.
"""

import random

import pytest_twisted

from ctid.adapters.corebank.hostclient import HostClient
from ctid.adapters.pbxsim import population
from ctid.ivr import say
from tests.e2e import Daemon, daemon_config, free_port
from tests.test_corebank_iso8583 import Host
from tests.test_ivr_e2e import BankLine, pieces

CARD, PIN = population.DEMO_CARD
SIGNED, SIGNED_PIN = population.DEMO_SIGNED
#: The signed customer's other own account (a passbook, same password), and its last four digits.
OTHER = "6222020020005678"
OTHER_LAST4 = OTHER[-4:]
#: The key the simulated host decrypts PIN blocks with (tests.test_corebank_iso8583.PIN_KEY).
PIN_KEY_HEX = "00112233445566778899AABBCCDDEEFF"


class HostLine(BankLine):
    """The daemon with the bank's flows over ISO 8583, the simulated host, and what the IVR reported."""

    def __init__(self, daemon, host):
        corebank = daemon.root.getServiceNamed("corebank")
        super().__init__(daemon, corebank.bank, host.pool)
        self.host, self.client = host, corebank.backend

    def call(self, script, number="13800138000"):
        """A quick-fingered caller (keys 50–100 ms apart, to keep the file fast) dials the bank's line."""
        caller = population.Caller(self.daemon.world, random.Random(7), self.daemon.sim.settings, number, "95566",
                                   120, script)
        caller.dtmf.first = caller.dtmf.between = (0.05, 0.1)
        return caller.call()

    async def host_down(self):
        """Stop the host listening and drop the daemon's links: every later attempt is refused."""
        await self.host.listening.stopListening()
        self.host.listening = None
        for link in list(self.client.pool.links):
            link.transport.loseConnection()
        await self.daemon.until(lambda: not self.client.pool.links, "the daemon's host links to drop")

    async def balances(self):
        """The signed customer's own accounts' ledger balances, straight from the host's sandbox bank (fen)."""
        found = {}
        for number in (SIGNED, OTHER):
            session = await self.host.bank.verify_signed(number, SIGNED_PIN)
            found[number[-4:]] = (await self.host.bank.balance(session)).ledger_fen
        return found


@pytest_twisted.async_yield_fixture
async def line(tmp_path):
    """The simulated host on a free port, then the daemon with ``[corebank] backend = iso8583`` pointing at it."""
    host = Host(tmp_path, port=free_port())
    await host.start()
    corebank = (f"[corebank]\nenabled = yes\nbackend = iso8583\nhost_endpoint = tcp:127.0.0.1:{host.port_number}:"
                f"timeout=2\npin_key = {PIN_KEY_HEX}\ntrade_timeout = 2\nreversal_attempts = 3\n")
    daemon = Daemon(daemon_config(tmp_path, ivr=True, extra=corebank, patience="120 120",
                                talk_time="60 60", media_speed="16"))
    await daemon.start()
    yield HostLine(daemon, host)
    await daemon.stop()
    await host.stop()


@pytest_twisted.ensureDeferred
async def test_public_card_balance_spoken_over_iso8583(line):
    """1 (中文), 1 public, 1 card, number#, password#, 1: the host's balance is spoken in pieces."""
    assert isinstance(line.client, HostClient)
    trunk = line.call("111" + CARD + "#" + PIN + "#1")
    command = await line.until_command(trunk, "balance-is")
    end = await line.hang_up(trunk)
    session = await line.host.bank.verify_public(CARD, PIN)
    balance = await line.host.bank.balance(session)
    assert pieces(command) == (["balance-is"] + say.money(balance.ledger_fen, "zh") + ["available-is"]
                               + say.money(balance.available_fen, "zh"))
    assert end.path == "main>public>card>account>balance" and end.verified
    assert line.host.sim.counts["requests"] >= 2 and line.host.sim.counts["malformed"] == 0


@pytest_twisted.ensureDeferred
async def test_transfer_between_own_accounts(line):
    """2 signed, 7 transfer to the account ending 5678, 100 yuan, 1 confirm: the host moves the money."""
    before = await line.balances()
    trunk = line.call("12" + SIGNED + "#" + SIGNED_PIN + "#7" + OTHER_LAST4 + "100#1")
    command = await line.until_command(trunk, "transfer-done")
    end = await line.hang_up(trunk)
    after = await line.balances()
    assert pieces(command) == ["transfer-done", "balance-is"] + say.money(before[SIGNED[-4:]] - 10_000, "zh")
    assert after == {SIGNED[-4:]: before[SIGNED[-4:]] - 10_000, OTHER_LAST4: before[OTHER_LAST4] + 10_000}
    assert end.path == "main>signed>account>transfer>transfer_confirm>confirm" and end.verified


@pytest_twisted.ensureDeferred
async def test_host_timeout_on_a_transfer_is_reversed_and_offers_an_agent(line):
    """The host does the transfer but never answers: ctid reverses it, apologises, and 0 reaches an agent."""
    before = await line.balances()
    trunk = line.call("12" + SIGNED + "#" + SIGNED_PIN + "#7" + OTHER_LAST4 + "100#10")
    await line.until_command(trunk, "transfer-amount-is")
    line.host.sim.faults.drop = True
    await line.until_command(trunk, "bank-unavailable")
    await line.until_command(trunk, "offer-agent")
    await line.daemon.until(lambda: line.host.sim.counts["reversed"] == 1, "the host to reverse the transfer")
    end = await line.daemon.until(lambda: line.ends, "the hand-off")
    assert end[0].reason == "transfer"
    assert end[0].path == "main>signed>account>transfer>transfer_confirm>confirm>trouble>agent"
    assert await line.balances() == before
    await line.hang_up(trunk)


@pytest_twisted.ensureDeferred
async def test_host_down_is_an_apology_and_an_agent(line):
    """With the host gone the caller hears an apology, presses 0 and is handed over unverified."""
    await line.host_down()
    trunk = line.call("12" + SIGNED + "#" + SIGNED_PIN + "#0")
    await line.until_command(trunk, "bank-unavailable")
    await line.until_command(trunk, "CTID_VERIFIED")
    end = await line.daemon.until(lambda: line.ends, "the hand-off")
    assert (end[0].reason, end[0].path) == ("transfer", "main>signed>trouble>agent")
    assert line.daemon.world.get_var(trunk, "CTID_VERIFIED") == "no"
    await line.hang_up(trunk)
