"""Building the core-banking gateway: the corebank service of each backend, the host simulator plugin, the seeder."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.python import usage
from zope.interface.verify import verifyObject

from ctid import config
from ctid.adapters.corebank import hostsim_tap
from ctid.adapters.corebank import sandbox_schema as schema
from ctid.adapters.corebank.factory import make_corebank
from ctid.adapters.corebank.guard import GuardedBank
from ctid.adapters.corebank.hostclient import HostClient
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import SANDBOX_ACCOUNT_KEY, seed_bank
from ctid.adapters.store.engine import make_engine
from ctid.banking import ICoreBanking
from tests.test_corebank_sandbox import PUBLIC_CARD, PUBLIC_PASSWORD

ROOT = Path(__file__).resolve().parent.parent
PIN_KEY = "00112233445566778899AABBCCDDEEFF"


def settings(text: str) -> config.CoreBankSettings:
    return config.parse("[ami]\nsecret = s\n[corebank]\nenabled = yes\n" + text).corebank


@pytest_twisted.ensureDeferred
async def test_sandbox_service_creates_its_tables_and_serves_through_the_guard(tmp_path):
    """backend = sandbox: a 'corebank' service owning the bank's pool; its tables appear at start; the guarded
    bank verifies a seeded card on real database threads; trades reach the trade log."""
    url = f"sqlite:///{tmp_path / 'bank.sqlite'}"
    records = []
    service = make_corebank(settings(f"database = {url}\nlockout_attempts = 2\n"), reactor,
                            trade_log=lambda **record: records.append(record))
    assert service.name == "corebank" and isinstance(service.backend, SandboxBank)
    assert isinstance(service.bank, GuardedBank) and verifyObject(ICoreBanking, service.bank)
    assert service.bank.max_attempts == 2
    service.startService()
    try:
        await service.getServiceNamed("bank-tables").done
        engine = make_engine(url, pool_size=1)
        with engine.begin() as connection:
            seed_bank(connection, SANDBOX_ACCOUNT_KEY, generated=0, scrypt_n=16)
        engine.dispose()
        session = await service.bank.verify_public(PUBLIC_CARD, PUBLIC_PASSWORD)
        assert (await service.bank.balance(session)).available_fen > 0
        assert [r["kind"] for r in records] == ["verify_public", "balance"]
    finally:
        await service.stopService()


def test_iso8583_service_owns_the_host_links():
    """backend = iso8583: the service holds the link pool; the bank behind the guard is the host client."""
    service = make_corebank(settings(f"backend = iso8583\npin_key = {PIN_KEY}\npool_size = 3\n"
                                     "host_endpoint = tcp:127.0.0.1:9999:timeout=2\nterminal_id = IVR00001\n"),
                            reactor)
    links = service.getServiceNamed("host-links")
    assert isinstance(service.backend, HostClient) and links.size == 3 and len(list(links)) == 3
    assert service.backend.terminal_id == "IVR00001" and not service.running


def test_config_refuses_a_bad_backend_or_key():
    """Unknown backends, malformed PIN keys and terminal ids are one-line errors naming the key."""
    for text, key in (("backend = mainframe\n", "backend"), ("pin_key = 1234\n", "pin_key"),
                      ("terminal_id = toolongid\n", "terminal_id")):
        with pytest.raises(config.ConfigError, match=rf"\[corebank\] {key}:"):
            settings(text)
    with pytest.raises(config.ConfigError) as raised:
        settings("pin_key = 00112233445566778899AABBCCDDEEZZ\n")
    assert "778899" not in str(raised.value)


def test_the_daemon_tree_has_the_corebank_service():
    """The embedded default configuration runs the sandbox bank as the daemon's 'corebank' child."""
    from ctid.service import makeService

    root = makeService(config.load(str(ROOT / "conf" / "ctid.ini")), reactor)
    corebank = root.getServiceNamed("corebank")
    assert isinstance(corebank.backend, SandboxBank) and verifyObject(ICoreBanking, corebank.bank)


def test_hostsim_plugin_builds_its_tree(tmp_path):
    """twistd ctid-hostsim: database pool, sandbox tables and the listening port; a bad PIN key is a usage error."""
    options = hostsim_tap.Options()
    options.parseOptions(["--endpoint", "tcp:0:interface=127.0.0.1", "--database",
                          f"sqlite:///{tmp_path / 'bank.sqlite'}", "--pin-key", PIN_KEY])
    root = hostsim_tap.makeService(options, reactor)
    assert [s.name for s in root] == ["bank-db", "bank-tables", "hostsim"]
    with pytest.raises(usage.UsageError):
        hostsim_tap.Options().parseOptions(["--pin-key", "nothex"])


def test_seed_script_prints_the_demo_credentials(tmp_path, capsys):
    """scripts/ctid-seed-bank creates and fills the database and prints the demo cards and passwords."""
    path = ROOT / "scripts" / "ctid-seed-bank"
    loader = importlib.machinery.SourceFileLoader("ctid_seed_bank", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("ctid_seed_bank", loader))
    loader.exec_module(module)
    url = f"sqlite:///{tmp_path / 'bank.sqlite'}"
    assert module.main([url, "--generated", "1", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "6 customers" in out and f"{PUBLIC_CARD}  password {PUBLIC_PASSWORD}" in out and "short 80001" in out
    engine = make_engine(url, pool_size=1)
    with engine.connect() as connection:
        assert connection.execute(schema.accounts.select()).first() is not None
    engine.dispose()
