"""The ISO 8583 host client against the host simulator over loopback TCP; the codec, PIN blocks and breaker alone."""

from __future__ import annotations

from datetime import date

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.task import Clock, deferLater
from zope.interface.verify import verifyObject

from ctid.adapters.corebank import iso8583, pinblock
from ctid.adapters.corebank import sandbox_schema as schema
from ctid.adapters.corebank.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from ctid.adapters.corebank.hostclient import HostClient
from ctid.adapters.corebank.hostlink import HostPool
from ctid.adapters.corebank.hostsim import HostSimProtocol, HostSimulator, HostSimulatorFactory
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import seed_bank
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool
from ctid.banking import (
    BadCredentials,
    HostTimeout,
    HostUnavailable,
    ICoreBanking,
    ICoreBankingMonitor,
    InsufficientFunds,
    NotSigned,
    SessionExpired,
    TradeRejected,
)
from tests.e2e import free_port
from tests.test_corebank_sandbox import (
    CORPORATE_PASSWORD,
    CORPORATE_SHORT,
    KEY,
    PUBLIC_CARD,
    PUBLIC_PASSWORD,
    SIGNED_CARD,
    SIGNED_PASSWORD,
)

PIN_KEY = pinblock.parse_key("00112233445566778899AABBCCDDEEFF")


async def until(condition, limit: float = 10.0):
    """Wait (on the real reactor) until ``condition()`` is true; fail after ``limit`` seconds."""
    waited = 0.0
    while not condition():
        assert waited < limit, "condition not met in time"
        await deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


class Host:
    """The simulated host on a free loopback port, over a seeded SQLite sandbox bank on real threads."""

    def __init__(self, tmp_path, port: int = 0):
        engine = make_engine(f"sqlite:///{tmp_path / 'bank.sqlite'}", pool_size=2)
        with engine.begin() as connection:
            schema.metadata.create_all(connection)
            seed_bank(connection, KEY, seed=5, generated=2, scrypt_n=16)
        self.pool = DatabasePool(engine, reactor, name="bank-db", max_threads=2)
        self.bank = SandboxBank(self.pool, KEY, reactor, password_change_allowed=True)
        self.sim = HostSimulator(self.bank, PIN_KEY, reactor)
        self.frames: list[bytes] = []
        self.port_number = port
        self.listening = None

    async def start(self):
        self.pool.startService()
        factory = HostSimulatorFactory(self.sim)
        frames = self.frames

        class Recording(HostSimProtocol):
            def stringReceived(self, data):
                frames.append(data)
                super().stringReceived(data)

        factory.buildProtocol = lambda addr: Recording(self.sim)
        self.listening = await serverFromString(reactor, f"tcp:{self.port_number}:interface=127.0.0.1").listen(
            factory)
        self.port_number = self.listening.getHost().port

    async def stop(self):
        if self.listening is not None:
            await self.listening.stopListening()
            self.listening = None
        await self.pool.stopService()


def make_client(port: int, trade_timeout: float = 1.0, failures: int = 3) -> HostClient:
    """A started host client with two links to 127.0.0.1:``port`` and a breaker resetting after 0.3 s."""
    links = HostPool(clientFromString(reactor, f"tcp:127.0.0.1:{port}:timeout=2"), reactor, size=2, max_delay=0.5)
    links.startService()
    return HostClient(links, reactor, PIN_KEY, terminal_id="TEST0001", trade_timeout=trade_timeout,
                      breaker=CircuitBreaker(reactor, failures, 0.3), reversal_attempts=3)


@pytest_twisted.async_yield_fixture
async def host(tmp_path):
    """A running simulated host."""
    running = Host(tmp_path)
    await running.start()
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def client(host):
    """A host client connected to the simulated host (1 s per trade)."""
    client = make_client(host.port_number)
    yield client
    await client.pool.stopService()


# -- every operation over the wire -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_every_operation_over_loopback(client, host):
    """Each ICoreBanking operation gives over ISO 8583 what the sandbox gives directly."""
    assert verifyObject(ICoreBanking, client) and verifyObject(ICoreBankingMonitor, client)
    session = await client.verify_signed(SIGNED_CARD, SIGNED_PASSWORD)
    direct = host.bank.session(session.token)
    assert session == direct
    assert await client.balance(session) == await host.bank.balance(direct)
    assert await client.recent_transactions(session) == await host.bank.recent_transactions(direct)
    since = date(2000, 1, 1)
    assert await client.transactions_since(session, since, 5) == await host.bank.transactions_since(direct, since, 5)
    assert await client.transactions_by_amount(session, 850_000) == await host.bank.transactions_by_amount(
        direct, 850_000)
    assert await client.statement(session, since) == await host.bank.statement(direct, since)
    assert await client.can_change_password(session) is True
    receipt = await client.transfer(session, session.accounts[1].ref, 2_000)
    assert receipt.amount_fen == 2_000 and len(receipt.reference) == 12
    bill = await client.query_bill(session, "mobile", "13800138000")
    assert bill == await host.bank.query_bill(direct, "mobile", "13800138000")
    assert (await client.pay_bill(session, "mobile", "13800138000", 650)).amount_fen == 650
    assert (await client.prepay(session, "mobile", "13800138000", 10_000)).amount_fen == 10_000
    await client.change_password(session, SIGNED_PASSWORD, "135246")
    assert (await client.report_loss(session)).account_masked == session.account_masked
    for name in ("interest_rates", "exchange_rates", "products", "policies"):
        assert await getattr(client, name)() == await getattr(host.bank, name)()
    assert (await client.policy("fx")).code == "fx"
    await client.close(session)
    with pytest.raises(SessionExpired):
        await client.balance(session)
    public = await client.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD)
    assert (await client.report_loss(public, "id_card", "110101199003071234")).reference
    corporate = await client.verify_corporate(CORPORATE_SHORT, CORPORATE_PASSWORD)
    assert corporate.kind == "corporate" and len(corporate.accounts) == 2


@pytest_twisted.ensureDeferred
async def test_refusals_map_to_the_interface_errors(client):
    """Wrong password, unsigned customer, insufficient funds, unknown bill, unknown policy: the right errors."""
    with pytest.raises(BadCredentials):
        await client.verify_public(PUBLIC_CARD, "000000")
    with pytest.raises(NotSigned):
        await client.verify_signed(PUBLIC_CARD, PUBLIC_PASSWORD)
    session = await client.verify_signed(SIGNED_CARD, SIGNED_PASSWORD)
    with pytest.raises(InsufficientFunds):
        await client.transfer(session, session.accounts[1].ref, 10**11)
    with pytest.raises(TradeRejected) as raised:
        await client.query_bill(session, "water", "12345")
    assert raised.value.code == "not_found"
    with pytest.raises(TradeRejected):
        await client.policy("nothing")
    assert client.counters()["errors"] == 0 and client.breaker.state == CLOSED


@pytest_twisted.ensureDeferred
async def test_pins_never_travel_in_clear(client, host):
    """Passwords cross the wire only inside encrypted PIN blocks."""
    session = await client.verify_signed("6222020040008765", "246810")
    await client.change_password(session, "246810", "975310")
    assert host.frames and not any(b"246810" in frame or b"975310" in frame for frame in host.frames)


# -- timeouts, reversals, retries ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_timed_out_transfer_is_reversed_never_retried(client, host):
    """The host does the transfer but does not answer: HostTimeout, one request only, then a reversal undoes it."""
    session = await client.verify_signed(SIGNED_CARD, SIGNED_PASSWORD)
    before = (await client.balance(session)).ledger_fen
    requests = host.sim.counts["requests"]
    host.sim.faults.drop = True
    with pytest.raises(HostTimeout):
        await client.transfer(session, session.accounts[1].ref, 30_000)
    await until(lambda: client.counts["reversals_acknowledged"] == 1)
    assert host.sim.counts["requests"] - requests == 2  # the transfer once, then its reversal
    assert host.sim.counts["reversed"] == 1
    host.sim.faults.drop = False
    assert (await client.balance(session)).ledger_fen == before
    assert client.counters()["timeouts"] == 1 and client.counters()["retries"] == 0


@pytest_twisted.ensureDeferred
async def test_a_timed_out_inquiry_is_sent_once_more(client, host):
    """An idempotent inquiry that gets no answer is retried once, then fails with HostTimeout."""
    session = await client.verify_signed(SIGNED_CARD, SIGNED_PASSWORD)
    requests = host.sim.counts["requests"]
    host.sim.faults.drop = True
    with pytest.raises(HostTimeout):
        await client.balance(session)
    assert host.sim.counts["requests"] - requests == 2
    assert client.counts["retries"] == 1 and client.counts["reversals"] == 0


@pytest_twisted.ensureDeferred
async def test_a_late_answer_is_counted_not_delivered(client, host):
    """An answer arriving after the deadline is dropped as late; the next trade is unaffected."""
    public = await client.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD)
    host.sim.faults.delay = 1.2
    with pytest.raises(HostTimeout):
        await client.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD)
    await until(lambda: client.counters()["late"] == 1)
    host.sim.faults.delay = 0
    assert (await client.balance(public)).currency == "CNY"


@pytest_twisted.ensureDeferred
async def test_host_malfunction_answers_count_as_failures(client, host):
    """A host answering 96 gives HostUnavailable and counts towards the breaker."""
    host.sim.faults.response_code = "96"
    with pytest.raises(HostUnavailable):
        await client.interest_rates()
    assert client.breaker.failures == 1


# -- host down, breaker -----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_host_down_opens_the_breaker_which_half_opens_and_closes(tmp_path):
    """No host: HostUnavailable; 3 failures open the breaker (trades refused at once); after the reset time one
    trial goes out; once the host is up the trial succeeds and the breaker closes."""
    port = free_port()
    client = make_client(port, trade_timeout=0.5)
    try:
        for _ in range(3):
            with pytest.raises(HostUnavailable):
                await client.interest_rates()
        assert client.breaker.state == OPEN
        with pytest.raises(HostUnavailable):
            await client.interest_rates()
        assert client.counts["refused"] == 1
        await deferLater(reactor, 0.35, lambda: None)
        with pytest.raises(HostUnavailable):
            await client.interest_rates()  # the half-open trial, still failing
        assert client.breaker.state == OPEN and client.breaker.opened == 2
        host = Host(tmp_path, port)
        await host.start()
        try:
            await until(lambda: client.counters()["links_up"] > 0)
            await deferLater(reactor, 0.35, lambda: None)
            assert await client.interest_rates()  # the next half-open trial
            assert client.breaker.state == CLOSED and client.breaker.opened == 2
        finally:
            await host.stop()
    finally:
        await client.pool.stopService()


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_an_unacknowledged_reversal_is_reported_for_reconciliation(client, host):
    """When neither the trade nor its reversals are answered, the client gives up after its attempts and logs it."""
    session = await client.verify_signed(SIGNED_CARD, SIGNED_PASSWORD)
    host.sim.faults.drop = host.sim.faults.drop_reversals = True
    client.trade_timeout = 0.2
    with pytest.raises(HostTimeout):
        await client.pay_bill(session, "phone", "02162345678", 100)
    await until(lambda: client.counts["reversals_failed"] == 1)


# -- malformed frames ---------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_malformed_frames_from_the_host_do_not_crash_the_client(client, host):
    """Garbage answers are counted and dropped (the link closes after 5 in a row); the client recovers."""
    client.trade_timeout = 0.3
    client.breaker.failure_threshold = 100
    host.sim.faults.garbage = True
    for _ in range(3):
        with pytest.raises(HostTimeout):
            await client.exchange_rates()
    assert client.counters()["malformed"] == 6 and client.counters()["disconnects"] >= 1
    host.sim.faults.garbage = False
    await until(lambda: client.counters()["links_up"] == 2)
    assert await client.exchange_rates()


@pytest_twisted.ensureDeferred
async def test_malformed_requests_do_not_crash_the_simulator(client, host):
    """Garbage sent to the simulator is dropped; the same connection then serves a real request."""
    link = await client.pool.acquire()
    link.sendString(b"\xffnot iso 8583")
    assert await client.products()
    assert host.sim.counts["malformed"] >= 1


# -- pure parts ---------------------------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_decoding_any_bytes_fails_only_with_frame_error(data):
    """The decoder never raises anything but FrameError, whatever arrives."""
    try:
        iso8583.decode(data)
    except iso8583.FrameError:
        pass


@given(st.text(alphabet="0123456789", min_size=4, max_size=12),
       st.text(alphabet="0123456789", min_size=1, max_size=19))
def test_pin_blocks_round_trip(pin, account):
    """A PIN survives format 0 (with its account) and format 1; its block is 16 hex digits without the PIN."""
    block = pinblock.encrypt(pin, account, PIN_KEY)
    assert len(block) == 16 and pinblock.decrypt(block, account, PIN_KEY) == pin
    assert pinblock.decrypt(pinblock.encrypt(pin, None, PIN_KEY), None, PIN_KEY) == pin


def test_pin_blocks_refuse_the_wrong_key():
    """A block decrypted under another key is refused, never turned into a wrong PIN silently."""
    block = pinblock.encrypt("123456", "6222020030004321", PIN_KEY)
    with pytest.raises(pinblock.PinBlockError):
        pinblock.decrypt(block, "6222020030004321", pinblock.parse_key("FF" * 24))
    with pytest.raises(pinblock.PinBlockError):
        pinblock.parse_key("not hex")


def test_response_codes_round_trip():
    """Each response code maps to an error that maps back to it."""
    aliases = {"14": "55", "96": "91", "30": "12"}  # codes sharing an error map back to the first
    for code in iso8583.RESPONSE_CODES:
        assert iso8583.code_for(iso8583.error_for(code)) == aliases.get(code, code)


def test_breaker_transitions_on_a_clock():
    """closed -> open after N failures; refuses until the reset time; one trial; success closes it."""
    clock = Clock()
    breaker = CircuitBreaker(clock, failure_threshold=2, reset_timeout=10)
    breaker.failed()
    assert breaker.allow() and breaker.state == CLOSED
    breaker.failed()
    assert breaker.state == OPEN and not breaker.allow()
    clock.advance(10)
    assert breaker.allow() and breaker.state == HALF_OPEN and not breaker.allow()
    breaker.failed()
    assert breaker.state == OPEN
    clock.advance(10)
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == CLOSED and breaker.allow()
