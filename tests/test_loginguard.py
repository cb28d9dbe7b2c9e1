"""Login protection: back-off per user and per address (pure, on a Clock), the audit, and the CTI Login refusals."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from ctid.adapters.store.schema import audit_log
from ctid.client import CTIClient, CTIClientError
from ctid.directory import AuthenticationError, DirectoryError, Identity
from ctid.loginguard import Backoff, LoginGuard, TooManyAttempts, main_role, peer_address
from tests.e2e import PASSWORD
from tests.test_records import rows, written

SUPERVISOR = Identity("1900", "Zhang Min", roles={"agent", "supervisor"})


class Directory:
    """A directory answering from a dict of id -> (password, Identity), or failing with DirectoryError when down."""

    def __init__(self):
        self.people = {"1900": ("right", SUPERVISOR), "1001": ("right", Identity("1001", "Li Na"))}
        self.down = False
        self.asked = 0

    def authenticate(self, agent_id: str, password: str) -> Deferred:
        self.asked += 1
        if self.down:
            return fail(DirectoryError("down"))
        entry = self.people.get(agent_id)
        if entry is None or entry[0] != password:
            return fail(AuthenticationError("bad_credentials"))
        return succeed(entry[1])


def attempt(guard: LoginGuard, directory: Directory, agent: str, password: str, peer: str = "10.0.0.1:4000"):
    """The outcome of one login through ``guard``: the Identity, or the exception it failed with."""
    results = []
    Deferred.fromCoroutine(guard.authenticate(directory, agent, password, peer)).addBoth(results.append)
    (result,) = results
    return result.value if hasattr(result, "value") else result


# --- Backoff ---------------------------------------------------------------------------------------


def test_free_failures_then_doubling_locks_up_to_the_cap():
    """``free`` failures are allowed, the last of them locking 1 s; then 2, 4 … seconds, never more than the cap."""
    clock = Clock()
    backoff = Backoff(clock, free=3, base=1.0, cap=5.0)
    locks = [backoff.failed("1001") for _ in range(7)]
    assert locks == [0.0, 0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.retry_after("1001") == 5.0
    clock.advance(3)
    assert backoff.retry_after("1001") == 2.0 and backoff.retry_after("other") == 0.0


def test_success_clears_and_quiet_time_forgets():
    """A success forgets a key's failures; so does ``forget`` seconds without a failure."""
    clock = Clock()
    backoff = Backoff(clock, free=2, base=10.0, cap=60.0, forget=100.0)
    backoff.failed("a"), backoff.failed("a"), backoff.failed("b"), backoff.failed("b")
    backoff.succeeded("a")
    assert backoff.retry_after("a") == 0.0 and backoff.failed("a") == 0.0
    clock.advance(101)
    assert backoff.retry_after("b") == 0.0 and backoff.failed("b") == 0.0 and len(backoff) == 2


def test_a_lock_longer_than_forget_is_kept_to_its_end():
    """A key locked longer than ``forget`` is not forgotten before its lock ends."""
    clock = Clock()
    backoff = Backoff(clock, free=0, base=50.0, cap=50.0, forget=10.0)
    backoff.failed("a")
    clock.advance(20)
    assert backoff.retry_after("a") == 30.0


def test_memory_is_bounded_by_max_keys():
    """A flood of made-up ids keeps at most ``max_keys`` entries, dropping the stalest."""
    backoff = Backoff(Clock(), free=0, max_keys=100)
    for n in range(1000):
        backoff.failed(f"id{n}")
    assert len(backoff) == 100 and backoff.retry_after("id999") > 0 and backoff.retry_after("id0") == 0.0


def test_bad_policies_are_refused():
    """Negative free counts, a cap below the base and empty bounds are ValueErrors."""
    for kwargs in ({"free": -1}, {"base": 0}, {"base": 5, "cap": 1}, {"forget": 0}, {"max_keys": 0}):
        with pytest.raises(ValueError):
            Backoff(Clock(), **kwargs)


def test_peer_addresses_and_main_roles():
    """``host:port`` peers (IPv4, IPv6) give their host; an audit row names the highest role held."""
    assert peer_address("10.1.2.3:5555") == "10.1.2.3" and peer_address("[::1]:80") == "::1"
    assert peer_address("::1:80") == "::1" and peer_address("UNIXAddress(None)") == "UNIXAddress(None)"
    assert peer_address(None) == ""
    assert main_role(["agent", "supervisor"]) == "supervisor" and main_role(["leader", "admin"]) == "admin"
    assert main_role([]) is None


# --- LoginGuard -----------------------------------------------------------------------------------


def test_a_user_is_locked_after_its_failures_without_asking_the_directory():
    """Past ``user_failures`` a locked attempt fails with TooManyAttempts (even with the right password)."""
    clock, directory, audit = Clock(), Directory(), []
    guard = LoginGuard(clock, user_failures=3, base=2.0, audit=lambda *row: audit.append(row))
    outcomes = [type(attempt(guard, directory, "1001", "wrong")).__name__ for _ in range(3)]
    assert outcomes == ["AuthenticationError"] * 3
    locked = attempt(guard, directory, "1001", "right")
    assert isinstance(locked, TooManyAttempts) and locked.retry_after == 2.0 and locked.scope == "user"
    assert directory.asked == 3
    clock.advance(2)
    assert attempt(guard, directory, "1001", "right").agent_id == "1001"
    assert [row[5] for row in audit] == ["bad_credentials"] * 3 + ["too_many_attempts", "ok"]
    assert audit[-1] == ("1001", "agent", "10.0.0.1:4000", "login", None, "ok", "")
    assert audit[-2][6] == "user locked for 2 s"


def test_an_address_is_locked_across_user_ids_and_a_good_login_does_not_unlock_it():
    """Guessing many ids from one address locks the address; another address is not affected."""
    clock, directory = Clock(), Directory()
    guard = LoginGuard(clock, user_failures=100, address_failures=3)
    for n in range(3):
        assert isinstance(attempt(guard, directory, f"guess{n}", "x"), AuthenticationError)
    assert attempt(guard, directory, "1900", "right", "10.0.0.2:1") == SUPERVISOR
    locked = attempt(guard, directory, "1001", "right")
    assert isinstance(locked, TooManyAttempts) and locked.scope == "address"
    clock.advance(locked.retry_after)
    assert attempt(guard, directory, "1001", "right").agent_id == "1001"
    assert isinstance(attempt(guard, directory, "1001", "wrong"), AuthenticationError)
    assert isinstance(attempt(guard, directory, "1001", "right"), TooManyAttempts)  # the address: 4th failure


def test_directory_down_is_audited_and_not_counted_as_a_failure():
    """LDAP down: the attempt is audited ``directory_unavailable`` and does not bring a lock-out closer."""
    directory, audit = Directory(), []
    guard = LoginGuard(Clock(), user_failures=0, audit=lambda *row: audit.append(row))
    directory.down = True
    assert isinstance(attempt(guard, directory, "1001", "right"), DirectoryError)
    directory.down = False
    assert attempt(guard, directory, "1001", "right").agent_id == "1001"
    assert [row[5] for row in audit] == ["directory_unavailable", "ok"]


def test_logouts_are_audited_with_the_main_role_and_never_a_password():
    """A sign-out is one audit row; nothing audited carries the password typed."""
    audit = []
    guard = LoginGuard(Clock(), audit=lambda *row: audit.append(row))
    attempt(guard, Directory(), "1900", "right")
    attempt(guard, Directory(), "1900", "s3cr3t-typo")
    guard.logged_out("1900", ["agent", "supervisor"], "10.0.0.1:4000", "after the call")
    assert audit[-1] == ("1900", "supervisor", "10.0.0.1:4000", "logout", None, "ok", "after the call")
    assert "s3cr3t" not in repr(audit) and "right" not in repr(audit)


# --- end to end: the CTI Login ---------------------------------------------------------------------


async def _refused(call) -> CTIClientError:
    with pytest.raises(CTIClientError) as info:
        await call
    return info.value


@pytest_twisted.ensureDeferred
async def test_cti_login_answers_too_many_attempts_with_retry_after_and_audits_everything(daemon):
    """Five wrong passwords, then even the right one is ``too_many_attempts`` with ``retry_after``; all audited."""
    client = CTIClient(reactor, name="test-guard/1", retry_policy=lambda attempt: 0.05)
    await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    for _ in range(5):
        assert (await _refused(client.call("Login", agent="1002", password="wrong", station="1002"))).code == \
            "bad_credentials"
    error = await _refused(client.call("Login", agent="1002", password=PASSWORD, station="1002"))
    assert error.code == "too_many_attempts" and error.data == {"retry_after": 1}
    other = CTIClient(reactor, name="test-guard/2", retry_policy=lambda attempt: 0.05)
    await other.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    await other.call("Login", agent="1001", password=PASSWORD, station="1001")
    await other.call("Logout")
    await written(daemon, audit_log, "the logout", actor="1001", action="logout")
    outcomes = [(row["action"], row["outcome"]) for row in rows(daemon, audit_log, actor="1002")]
    assert sorted(outcomes) == sorted([("login", "bad_credentials")] * 5 + [("login", "too_many_attempts")])
    (login,) = rows(daemon, audit_log, actor="1001", action="login")
    assert login["outcome"] == "ok" and login["role"] == "agent" and login["address"].startswith("127.0.0.1:")
    assert not any(PASSWORD in str(row) or "wrong" in str(row.values()) for row in rows(daemon, audit_log))
    await client.close()
    await other.close()
