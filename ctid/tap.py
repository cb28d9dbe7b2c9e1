"""``twistd ctid``: command-line options and the service maker."""

from __future__ import annotations

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
    from ctid.service import makeService as build

    return build(settings)
