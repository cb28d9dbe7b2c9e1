"""Structured logging: a level-filtered console observer and an optional JSON-lines log file.

``[ctid] log_level`` sets the minimum level of both.  The console observer is
used with ``twistd --logger ctid.logs.console_observer`` (as ``make run``
does); twistd creates it after the service tree is built, so the level set
by :func:`set_console_level` from the configuration applies from the first
line.
"""

from __future__ import annotations

import io
import sys

from twisted.application.service import Service
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
)

_console_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)


def set_console_level(level: str) -> None:
    """Show events at ``level`` and above on the console observer."""
    _console_levels.setLogLevelForNamespace("", LogLevel.levelWithName(level))


def console_observer() -> ILogObserver:
    """twistd ``--logger`` factory: text lines on stdout, filtered by ``log_level``."""
    return FilteringLogObserver(textFileLogObserver(sys.stdout), [_console_levels])


class JSONLogService(Service):
    """While running, appends every log event at or above ``level`` to ``path`` as JSON lines."""

    def __init__(self, path: str, level: str = "info"):
        self.path = path
        self._predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
        self._file: io.TextIOWrapper | None = None
        self._observer: ILogObserver | None = None

    def set_level(self, level: str) -> None:
        """Change the minimum level written (used on reload)."""
        self._predicate.setLogLevelForNamespace("", LogLevel.levelWithName(level))

    def startService(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8")
        self._observer = FilteringLogObserver(jsonFileLogObserver(self._file), [self._predicate])
        globalLogPublisher.addObserver(self._observer)
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None
