"""Settings of the simulated switch: one frozen, validated object.

ctid maps the ``[pbxsim]`` section of ``conf/ctid.ini`` onto
:class:`SimulatorSettings`; ``twistd ctid-pbxsim`` builds one from its
command line.  Every field has a default, so ``SimulatorSettings()`` is a
working simulator on 127.0.0.1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_AGENT = re.compile(r"^[0-9A-Za-z_.-]{1,32}$")
_DIGITS = re.compile(r"^[0-9*#]{1,32}$")


class SettingsError(ValueError):
    """A simulator setting is out of range or malformed."""


@dataclass(frozen=True)
class SimulatorSettings:
    """Everything the simulator needs; see docs/pbxsim.md for each field."""

    ami_endpoint: str = "tcp:5038:interface=127.0.0.1"
    agi_endpoint: str = "tcp:127.0.0.1:4573"
    agi_script: str = "bank"
    username: str = "ctid"
    secret: str = "ctid-sim-secret"
    seed: int = 1
    calls_per_minute: float = 6.0
    agents: tuple[str, ...] = ("1001", "1002", "1003", "1004")
    dnis: tuple[str, ...] = ("95566",)
    ivr_share: float = 0.5
    outbound_share: float = 0.1
    answer_delay: tuple[float, float] = (1.0, 4.0)
    no_answer_rate: float = 0.1
    talk_time: tuple[float, float] = (20.0, 90.0)
    patience: tuple[float, float] = (30.0, 120.0)
    max_calls: int = 0
    # Added by the simulator (all optional):
    supervisors: tuple[str, ...] = ("1900",)
    direct_prefix: str = "8"
    direct_ring: int = 30
    hold_rate: float = 0.1
    agi_timeout: float = 5.0
    ami_write_buffer: int = 4 * 1024 * 1024
    ami_auth_timeout: float = 30.0
    # Sound files (prompts, recordings) play this many times faster than real time (tests: 4).
    media_speed: float = 1.0
    # Simulated desktops: the agents sign in to ctid's CTI server and become ready.
    desktops: bool = False
    cti_endpoint: str = "tcp:127.0.0.1:7070"
    desktop_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        for name in ("agents", "dnis", "supervisors", "answer_delay", "talk_time", "patience"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [part for part in re.split(r"[,\s]+", value) if part]
            value = tuple(str(v) for v in value) if name in ("agents", "dnis", "supervisors") else tuple(value)
            object.__setattr__(self, name, value)
        for name in ("answer_delay", "talk_time", "patience"):
            try:
                low, high = (float(v) for v in getattr(self, name))
            except (TypeError, ValueError):
                raise SettingsError(f"{name} must be two numbers (low, high)") from None
            object.__setattr__(self, name, (low, high))
        _check(bool(self.username) and ":" not in self.username, "username must be non-empty")
        _check(self.calls_per_minute >= 0, "calls_per_minute must be >= 0")
        _check(self.max_calls >= 0, "max_calls must be >= 0")
        for name in ("ivr_share", "outbound_share", "no_answer_rate", "hold_rate"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"{name} must be between 0 and 1")
        for name in ("answer_delay", "talk_time", "patience"):
            low, high = getattr(self, name)
            _check(0.0 <= low <= high, f"{name} must be (low, high) with 0 <= low <= high")
        _check(bool(self.agents) or self.calls_per_minute == 0, "agents must not be empty")
        for ext in self.agents + self.supervisors:
            _check(bool(_AGENT.match(ext)) and ext != "trunk", f"bad phone extension {ext!r}")
        _check(bool(self.dnis) and all(_DIGITS.match(d) for d in self.dnis), "dnis must be digit strings")
        _check(bool(re.match(r"^[0-9]$", self.direct_prefix)), "direct_prefix must be one digit")
        _check(self.direct_ring > 0 and self.agi_timeout > 0, "timeouts must be positive")
        _check(0.1 <= self.media_speed <= 100, "media_speed must be between 0.1 and 100")
        _check(self.ami_write_buffer >= 64 * 1024, "ami_write_buffer must be at least 64 KiB")
        _check(bool(re.match(r"^[\w./-]*$", self.agi_script)), "agi_script must be a plain path")

    @property
    def agi_url(self) -> str:
        """The ``agi://host:port/script`` URL the dialplan's AGI() step shows."""
        return f"{self.agi_host_url}/{self.agi_script}"

    @property
    def agi_host_url(self) -> str:
        """``agi://host:port``: ctid's FastAGI server, for ``${CTID_AGI_HOST}/<script>``."""
        host, port = agi_host_port(self.agi_endpoint)
        return f"agi://{host}:{port}"


def agi_host_port(endpoint: str) -> tuple[str, int]:
    """Host and port of a client endpoint string (``tcp:HOST:PORT`` or keyword form)."""
    parts = endpoint.split(":")
    positional = [p for p in parts[1:] if "=" not in p]
    keywords = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    host = keywords.get("host") or (positional[0] if positional else "127.0.0.1")
    port = keywords.get("port") or (positional[1] if len(positional) > 1 else "4573")
    try:
        return host, int(port)
    except ValueError:
        raise SettingsError(f"bad port in AGI endpoint {endpoint!r}") from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message)
