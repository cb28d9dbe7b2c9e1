"""The directory: Identity and errors (pure), scrypt hashes, and SQLDirectory's contract on SQLite and MySQL."""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import re
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import select, update
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher
from zope.interface.verify import verifyObject

import ctid.adapters.directory as sqldirectory
from ctid.adapters.directory import DUMMY_HASH, SCRYPT_N, SCRYPT_P, SCRYPT_R, SQLDirectory, hash_password
from ctid.adapters.store import migrate
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool, ThreadlessDatabasePool
from ctid.adapters.store.schema import agent_skills, agents, metadata, skill_groups
from ctid.directory import (
    AuthenticationError,
    DirectoryError,
    Identity,
    join_list,
    split_list,
)
from ctid.interfaces import IDirectory, IDirectoryAdmin
from tests.conftest import wipe_tables

PASSWORD = "Tr0ub4dor&3"
HASH_FORMAT = re.compile(r"^scrypt\$16384\$8\$1\$([A-Za-z0-9+/=]{24})\$([A-Za-z0-9+/=]{44})$")
GROUPS = ("accounts", "consultation", "complaints", "experts", "corporate")


def result_of(deferred: Deferred):
    """The result of an already-fired Deferred, raising its failure."""
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


# --- pure: Identity, errors, lists ---------------------------------------------------------------


def test_identity_is_frozen_plain_data():
    """An Identity cannot be changed, not even its skills, and compares and hashes by value."""
    identity = Identity("1001", "Li Na", roles={"agent"}, skills={"accounts": 5}, manages=["Shanghai"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.name = "x"
    with pytest.raises(TypeError):
        identity.skills["accounts"] = 9
    assert identity.roles == frozenset({"agent"}) and identity.manages == frozenset({"Shanghai"})
    assert identity == Identity("1001", "Li Na", roles=frozenset({"agent"}), skills={"accounts": 5},
                                manages=frozenset({"Shanghai"}))
    assert hash(identity) == hash(Identity("1001", "Li Na", skills={"experts": 1}, manages={"Shanghai"}))
    assert identity.has_role("agent") and not identity.has_role("admin")


def test_identity_refuses_unknown_roles():
    """Roles are agent, supervisor, admin and leader; anything else is a ValueError."""
    with pytest.raises(ValueError, match="root"):
        Identity("1", "x", roles={"agent", "root"})


def test_authentication_error_codes_and_messages():
    """Unknown id and wrong password share one code and message; codes are a closed set."""
    error = AuthenticationError("bad_credentials")
    assert error.code == "bad_credentials" and str(error) == "unknown agent or wrong password"
    assert AuthenticationError("disabled").code == "disabled"
    with pytest.raises(ValueError):
        AuthenticationError("nope")


def test_comma_lists_round_trip_sorted():
    """The directory's comma lists are split without blanks and joined sorted; commas inside items are refused."""
    assert split_list(" b, a,,c ") == {"a", "b", "c"} and split_list(None) == frozenset()
    assert join_list({"b", "a", " "}) == "a,b"
    with pytest.raises(ValueError):
        join_list(["a,b"])


# --- password hashes -----------------------------------------------------------------------------


def test_hash_format_is_self_describing_and_salted():
    """``scrypt$n$r$p$salt$hash`` with a 16-byte salt and a 32-byte key; the same password hashes differently."""
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    salt, key = HASH_FORMAT.match(first).groups()
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(key)) == 32
    assert first != second and PASSWORD not in first
    assert sqldirectory.verify_password(PASSWORD, first) and not sqldirectory.verify_password("wrong", first)


@pytest.mark.parametrize("stored", ["", "plain", "md5$abc", "scrypt$16384$8$1$!!$!!", "scrypt$3$8$1$AAAA$AAAA",
                                    "scrypt$1073741824$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA"])
def test_malformed_hashes_never_match(stored):
    """A damaged or foreign hash (or huge parameters) is a mismatch, not a crash."""
    assert sqldirectory.verify_password(PASSWORD, stored) is False


def test_dummy_hash_costs_what_a_real_one_costs():
    """The hash checked for unknown agents has today's parameters, so it takes as long as a real check."""
    assert DUMMY_HASH.startswith(f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$") and HASH_FORMAT.match(DUMMY_HASH)


# --- the contract, on SQLite and MySQL -----------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def directory(database_url):
    """An SQLDirectory on a started thread pool, with the five skill groups; emptied and stopped after."""
    pool = DatabasePool(make_engine(database_url), name="directory", max_threads=2)
    pool.startService()
    directory = SQLDirectory(pool)
    for group in GROUPS:
        await directory.add_skill_group(group, f"{group} desk")
    yield directory
    await pool.run(wipe_tables)
    await pool.stopService()


def _columns(connection):
    """Runs in the pool: every value of every directory table, as text."""
    return [str(value) for table in metadata.sorted_tables for row in connection.execute(select(table))
            for value in row]


async def _error(deferred) -> AuthenticationError:
    """The AuthenticationError ``deferred`` fails with."""
    with pytest.raises(AuthenticationError) as info:
        await deferred
    return info.value


def test_sql_directory_provides_the_interfaces(directory):
    """SQLDirectory implements IDirectory and IDirectoryAdmin completely."""
    assert verifyObject(IDirectory, directory) and verifyObject(IDirectoryAdmin, directory)


@pytest_twisted.ensureDeferred
async def test_authenticate_with_the_right_password(directory):
    """The right password fires with the agent's Identity."""
    await directory.add_agent("1001", "Li Na", PASSWORD, skills={"accounts": 7}, city="Shanghai")
    identity = await directory.authenticate("1001", PASSWORD)
    assert identity == Identity("1001", "Li Na", roles={"agent"}, skills={"accounts": 7}, city="Shanghai")


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_agent_fail_alike(directory):
    """Wrong password, unknown id, empty or over-long input: one code, one message."""
    await directory.add_agent("1001", "Li Na", PASSWORD)
    errors = [await _error(directory.authenticate("1001", "wrong")),
              await _error(directory.authenticate("1002", PASSWORD)),
              await _error(directory.authenticate("1001", "")),
              await _error(directory.authenticate("1" * 100, PASSWORD)),
              await _error(directory.authenticate("1001", PASSWORD * 1000))]
    assert {(e.code, str(e)) for e in errors} == {("bad_credentials", "unknown agent or wrong password")}


@pytest_twisted.ensureDeferred
async def test_unknown_agent_costs_one_scrypt_too(directory, monkeypatch):
    """An unknown id or an agent without a password is checked against a dummy hash: same work as a real check."""
    checked = []
    real = sqldirectory.verify_password
    monkeypatch.setattr(sqldirectory, "verify_password", lambda pw, stored: checked.append(stored) or real(pw, stored))
    await directory.add_agent("1001", "Li Na", PASSWORD)
    await directory.add_agent("1002", "Zhang Wei", password=None)
    await _error(directory.authenticate("1001", "wrong"))
    await _error(directory.authenticate("9999", PASSWORD))
    await _error(directory.authenticate("1002", PASSWORD))
    assert len(checked) == 3 and checked[1:] == [DUMMY_HASH, DUMMY_HASH] and checked[0] != DUMMY_HASH


@pytest_twisted.ensureDeferred
async def test_disabled_account(directory):
    """A disabled account is told so only with its right password; enabling it again lets it in."""
    await directory.add_agent("1003", "Wang Fang", PASSWORD, enabled=False)
    assert (await _error(directory.authenticate("1003", PASSWORD))).code == "disabled"
    assert (await _error(directory.authenticate("1003", "wrong"))).code == "bad_credentials"
    await directory.set_enabled("1003", True)
    await directory.set_enabled("1003", True)  # unchanged value: still found (MySQL counts matched rows)
    assert (await directory.authenticate("1003", PASSWORD)).enabled


@pytest_twisted.ensureDeferred
async def test_lookup(directory):
    """lookup finds enabled and disabled agents without a password, and fires None for unknown ids."""
    await directory.add_agent("1004", "Liu Yang", PASSWORD, enabled=False, city="Beijing")
    found = await directory.lookup("1004")
    assert (found.agent_id, found.name, found.city, found.enabled) == ("1004", "Liu Yang", "Beijing", False)
    assert await directory.lookup("9999") is None


@pytest_twisted.ensureDeferred
async def test_roles_skills_and_manages_round_trip(directory):
    """What add_agent stores comes back identical from lookup and authenticate."""
    expected = Identity("1900", "Chen Jing", roles={"agent", "supervisor", "leader"},
                        skills={"experts": 9, "complaints": 1}, city="Shanghai",
                        manages={"accounts", "complaints", "Shanghai", "Beijing"})
    await directory.add_agent("1900", "Chen Jing", PASSWORD, roles=expected.roles, skills=dict(expected.skills),
                              city="Shanghai", manages="accounts, complaints,Shanghai,Beijing")
    assert await directory.lookup("1900") == expected
    assert await directory.authenticate("1900", PASSWORD) == expected


@pytest_twisted.ensureDeferred
async def test_agent_ids_are_case_sensitive_everywhere(directory):
    """``A1`` and ``a1`` are two agents on both backends (MySQL tables use a binary collation)."""
    await directory.add_agent("A1", "Upper", PASSWORD)
    await directory.add_agent("a1", "Lower", PASSWORD + "!")
    assert (await directory.lookup("A1")).name == "Upper"
    assert (await directory.authenticate("a1", PASSWORD + "!")).name == "Lower"
    await _error(directory.authenticate("a1", PASSWORD))


@pytest_twisted.ensureDeferred
async def test_add_agent_replace(directory):
    """An existing id is refused unless ``replace``, which rewrites the row and the skills."""
    await directory.add_agent("1001", "Li Na", PASSWORD, skills={"accounts": 7, "experts": 2})
    with pytest.raises(ValueError, match="exists"):
        await directory.add_agent("1001", "Someone", PASSWORD)
    await directory.add_agent("1001", "Li Na", "new password", skills={"corporate": 3}, replace=True)
    assert dict((await directory.authenticate("1001", "new password")).skills) == {"corporate": 3}


@pytest.mark.parametrize("change", [dict(roles={"root"}), dict(skills={"nosuch": 1}), dict(skills={"accounts": 0}),
                                    dict(skills={"accounts": 10}), dict(agent_id=""), dict(password="")])
@pytest_twisted.ensureDeferred
async def test_add_agent_refuses_bad_input(directory, change):
    """Unknown roles or skill groups, levels outside 1..9, an empty id or password: ValueError, nothing stored."""
    arguments = dict(agent_id="1005", name="Bad", password=PASSWORD, skills={"accounts": 5}) | change
    with pytest.raises(ValueError):
        await directory.add_agent(**arguments)
    assert await directory.lookup("1005") is None


@pytest_twisted.ensureDeferred
async def test_set_password(directory):
    """set_password replaces the hash: the old password stops working; unknown agents are a LookupError."""
    await directory.add_agent("1001", "Li Na", PASSWORD)
    await directory.set_password("1001", "second")
    await _error(directory.authenticate("1001", PASSWORD))
    assert (await directory.authenticate("1001", "second")).agent_id == "1001"
    with pytest.raises(LookupError):
        await directory.set_password("9999", "x")


@pytest_twisted.ensureDeferred
async def test_passwords_are_stored_hashed_and_never_in_clear(directory):
    """The column holds ``scrypt$16384$8$1$salt$hash``; the clear password is in no column of any table."""
    await directory.add_agent("1001", "Li Na", PASSWORD)
    await directory.add_agent("1002", "Zhang Wei", PASSWORD)
    await directory.set_password("1002", PASSWORD)
    hashes = await directory.pool.run(
        lambda connection: list(connection.execute(select(agents.c.password_hash).order_by(agents.c.agent_id))
                                .scalars()))
    assert all(HASH_FORMAT.match(h) for h in hashes) and hashes[0] != hashes[1]
    assert not [value for value in await directory.pool.run(_columns) if PASSWORD in value]


@pytest_twisted.ensureDeferred
async def test_passwords_never_reach_the_log(directory):
    """Adding, authenticating and failing log nothing that contains the password."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        await directory.add_agent("1001", "Li Na", PASSWORD)
        await directory.authenticate("1001", PASSWORD)
        await _error(directory.authenticate("1001", PASSWORD + "x"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert not [e for e in events if PASSWORD in (formatEvent(e) + repr(e))]


def _corrupt_hash(connection):
    """Runs in the pool: damage agent 1001's stored hash."""
    connection.execute(update(agents).where(agents.c.agent_id == "1001").values(password_hash="scrypt$oops"))


@pytest_twisted.ensureDeferred
async def test_damaged_hash_refuses_login(directory):
    """A corrupted stored hash refuses the login as bad credentials instead of crashing."""
    await directory.add_agent("1001", "Li Na", PASSWORD)
    await directory.pool.run(_corrupt_hash)
    assert (await _error(directory.authenticate("1001", PASSWORD))).code == "bad_credentials"


def test_skill_table_matches_skill_groups():
    """agent_skills refers to skill_groups by name and to agents by id (what the contract relies on)."""
    targets = {fk.target_fullname for fk in agent_skills.foreign_keys}
    assert targets == {"agents.agent_id", "skill_groups.name"} and skill_groups.c.name.primary_key


# --- failures and the threadless variant ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_unreachable_database_is_a_directory_error():
    """No database: DirectoryError (not a SQLAlchemy exception), a warning logged, no password in either."""
    events = []
    globalLogPublisher.addObserver(events.append)
    pool = DatabasePool(make_engine("mysql+pymysql://ctid:dbsecret@127.0.0.1:1/ctid", connect_timeout=2))
    pool.startService()
    try:
        with pytest.raises(DirectoryError) as info:
            await SQLDirectory(pool).authenticate("1001", PASSWORD)
    finally:
        globalLogPublisher.removeObserver(events.append)
        await pool.stopService()
    logged = " ".join(formatEvent(e) for e in events if "directory database error" in formatEvent(e))
    assert "Can't connect" in logged
    assert not any(secret in logged + str(info.value) for secret in (PASSWORD, "dbsecret"))


def test_directory_on_the_threadless_pool():
    """With the threadless pool every Deferred has fired on return: unit tests need no reactor and no threads."""
    pool = ThreadlessDatabasePool(make_engine("sqlite://"))
    pool.startService()
    result_of(pool.run(migrate.upgrade_connection))
    directory = SQLDirectory(pool)
    result_of(directory.add_skill_group("accounts"))
    result_of(directory.add_agent("1001", "Li Na", PASSWORD, skills={"accounts": 3}))
    assert result_of(directory.authenticate("1001", PASSWORD)).skills == {"accounts": 3}
    with pytest.raises(AuthenticationError):
        result_of(directory.authenticate("1001", "wrong"))
    pool.stopService()


def test_seed_script_is_idempotent(tmp_path, capsys):
    """scripts/ctid-seed migrates and loads the sample people; a second run leaves the same directory."""
    script = Path(__file__).parent.parent / "scripts" / "ctid-seed"
    loader = SourceFileLoader("ctid_seed", str(script))
    seed = importlib.util.module_from_spec(importlib.util.spec_from_loader("ctid_seed", loader))
    loader.exec_module(seed)
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    assert seed.main([url, "--password", PASSWORD]) == 0
    assert seed.main([url, "--password", PASSWORD]) == 0
    assert PASSWORD not in capsys.readouterr().out
    pool = ThreadlessDatabasePool(make_engine(url))
    pool.startService()
    directory = SQLDirectory(pool)
    supervisor = result_of(directory.authenticate("1900", PASSWORD))
    admin = result_of(directory.lookup("1999"))
    counts = result_of(pool.run(lambda c: [len(c.execute(select(t)).all()) for t in (agents, skill_groups,
                                                                                     agent_skills)]))
    pool.stopService()
    assert supervisor.has_role("supervisor") and "Shanghai" in supervisor.manages and admin.roles == {"admin"}
    assert sorted(counts) == sorted([6, len(GROUPS), 10])
