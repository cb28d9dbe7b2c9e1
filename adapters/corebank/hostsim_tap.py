"""``twistd ctid-hostsim``: the simulated ISO 8583 core-banking host, standalone, over the sandbox bank's database.

    twistd -n ctid-hostsim --endpoint tcp:8583:interface=127.0.0.1 --database sqlite:///var/bank.sqlite

Fill the database first with ``scripts/ctid-seed-bank`` (same account key).
The PIN key must be the daemon's ``[corebank] pin_key``; without one the
sandbox-only :data:`SANDBOX_PIN_KEY` is used (the daemon's embedded default
for the iso8583 backend in docs/corebank.md), with a warning.
"""

from __future__ import annotations

import os

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from ctid.adapters.corebank.factory import SandboxTables
from ctid.adapters.corebank.hostsim import HostSimulator, HostSimulatorFactory
from ctid.adapters.corebank.pinblock import PinBlockError, parse_key
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import SANDBOX_ACCOUNT_KEY
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool

log = Logger()

#: FOR THE SANDBOX ONLY: the PIN key the simulator uses when none is given.
SANDBOX_PIN_KEY = "0123456789ABCDEFFEDCBA9876543210"


class Options(usage.Options):
    """Command-line options of ``twistd ctid-hostsim``."""

    optParameters = [
        ["endpoint", "e", "tcp:8583:interface=127.0.0.1", "Listening endpoint string (ssl:… for TLS)."],
        ["database", "d", "sqlite:///var/bank.sqlite", "The sandbox bank's database URL."],
        ["account-key", "k", None, "Key of the number hashes (default: $CTID_BANK_ACCOUNT_KEY or the sandbox's)."],
        ["pin-key", "p", None, "PIN key, 32 or 48 hex digits (default: $CTID_PIN_KEY or the sandbox's)."],
        ["threads", "t", 2, "Database threads.", int],
    ]
    optFlags = [["password-change-allowed", None, "Let public customers change passwords."]]

    def postOptions(self) -> None:
        """Check the PIN key now, so a bad one is a usage error."""
        key = self["pin-key"] or os.environ.get("CTID_PIN_KEY") or ""
        try:
            parse_key(key or SANDBOX_PIN_KEY)
        except PinBlockError as e:
            raise usage.UsageError(f"--pin-key: {e}") from None
        self["pin-key"] = key
        if self["threads"] < 1:
            raise usage.UsageError("--threads must be at least 1")


def makeService(options: Options, reactor=None) -> MultiService:
    """The simulator's service tree: the database pool, the sandbox tables, the listening port."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    root = MultiService()
    pool = DatabasePool(make_engine(options["database"], pool_size=options["threads"]), reactor, name="bank-db",
                        max_threads=options["threads"])
    pool.setServiceParent(root)
    account_key = options["account-key"] or os.environ.get("CTID_BANK_ACCOUNT_KEY") or SANDBOX_ACCOUNT_KEY
    bank = SandboxBank(pool, account_key, reactor, password_change_allowed=options["password-change-allowed"])
    SandboxTables(bank).setServiceParent(root)
    if not options["pin-key"]:
        log.warn("ctid-hostsim: no PIN key given, using the sandbox-only default")
    simulator = HostSimulator(bank, parse_key(options["pin-key"] or SANDBOX_PIN_KEY), reactor)
    listener = StreamServerEndpointService(serverFromString(reactor, options["endpoint"]),
                                           HostSimulatorFactory(simulator))
    listener.setName("hostsim")
    listener.setServiceParent(root)
    return root
