"""SIGHUP reloads the configuration file and applies what can change live."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from typing import Any

from twisted.application.service import IServiceCollection, Service
from twisted.logger import Logger

from ctid import config as configuration
from ctid.logs import JSONLogService, set_console_level

Reloader = Callable[[configuration.Config], None]


_MISSING = object()


def changed_settings(old: configuration.Config, new: configuration.Config) -> list[str]:
    """``section.key`` names whose values differ between two configurations."""
    changes = []
    for field in dataclasses.fields(old):
        if field.name == "path":
            continue
        before, after = _flatten(getattr(old, field.name)), _flatten(getattr(new, field.name))
        for name in list(after) + [name for name in before if name not in after]:
            if before.get(name, _MISSING) != after.get(name, _MISSING):
                changes.append(f"{field.name}.{name}")
    return changes


def _flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value):
            flat.update(_flatten(value, f"{prefix}{field.name}."))
        else:
            flat[prefix + field.name] = value
    return flat


class ReloadService(Service):
    """Re-reads ``path`` on SIGHUP (or :meth:`reload`), applies the live-changeable settings.

    A configuration that no longer validates is refused: the error is logged
    and the running settings stay.  Parts register what they can apply live
    with :meth:`add_reloader`; every other change is logged as needing a restart.
    """

    name = "reload"
    log = Logger()
    LIVE = ("daemon.log_level",)

    def __init__(self, path: str, root: IServiceCollection, reactor: Any, current: configuration.Config | None = None):
        self.path = path
        self.root = root
        self.reactor = reactor
        self.current = current
        self._reloaders: list[tuple[tuple[str, ...], Reloader]] = [(self.LIVE, self._apply_log_level)]
        self._previous_handler: Any = None

    def add_reloader(self, settings: tuple[str, ...], reloader: Reloader) -> None:
        """Call ``reloader(new_config)`` when any of ``settings`` (``section.key``, or anything inside it) changes."""
        self._reloaders.append((settings, reloader))

    def startService(self) -> None:
        super().startService()
        if self.current is None:
            self.current = configuration.load(self.path)
        self._previous_handler = signal.signal(signal.SIGHUP, self._on_sighup)

    def stopService(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
        return super().stopService()

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def reload(self) -> list[str]:
        """Reload now; returns the settings that changed (empty when refused or unchanged)."""
        try:
            new = configuration.load(self.path)
        except configuration.ConfigError as e:
            self.log.error("reload refused, keeping the running configuration: {error}", error=str(e))
            return []
        assert self.current is not None
        changes = changed_settings(self.current, new)
        live = set()
        for settings, reloader in self._reloaders:
            touched = [name for name in changes if any(name == s or name.startswith(s + ".") for s in settings)]
            if touched:
                reloader(new)
                live.update(touched)
        for name in changes:
            if name not in live:
                self.log.warn("{setting} changed; it takes effect after a restart", setting=name)
        self.current = new
        self.log.info("configuration reloaded from {path}: {count} change(s), applied live: {live}",
                      path=self.path, count=len(changes), live=", ".join(sorted(live)) or "none")
        return changes

    def _apply_log_level(self, new: configuration.Config) -> None:
        set_console_level(new.daemon.log_level)
        for service in self.root:
            if isinstance(service, JSONLogService):
                service.set_level(new.daemon.log_level)
