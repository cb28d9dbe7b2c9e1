"""``twistd ctid``: command-line options and the service maker."""

from __future__ import annotations

import gc

from twisted.application.service import IService
from twisted.python import usage

from ctid import config


class Options(usage.Options):
    """Options for ``twistd ctid``: only where the configuration file is."""

    synopsis = "[--config PATH]"
    longdesc = "Run the ctid CTI middleware.  Everything else is set in the configuration file."
    optParameters = [["config", "c", "conf/ctid.ini", "Path to the configuration file (ctid.ini)."]]


def makeService(options: Options) -> IService:
    """Load the configuration and build the daemon's service tree.

    A bad configuration stops start-up with one line naming file, section and key.
    """
    try:
        settings = config.load(options["config"])
    except config.ConfigError as e:
        raise SystemExit(f"ctid: configuration error: {e}") from None
    from twisted.internet import reactor

    from ctid.service import makeService as build

    root = build(settings)
    # Objects made during start-up live for the whole run: keep them out of the collector's generations so
    # full collections stay short (they otherwise pause the reactor for hundreds of ms with 20k sessions).
    reactor.callWhenRunning(gc.freeze)
    return root
