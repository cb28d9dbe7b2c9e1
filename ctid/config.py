"""Load and validate ``ctid.ini`` into frozen settings objects.

Every key is whitelisted and typed; a wrong, missing or unknown setting raises
:class:`ConfigError` whose message is one line naming the file, the section
and the key.  Addresses are Twisted endpoint strings, checked by parsing them.
"""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.testing import MemoryReactor

from ctid.acd import QueueConfig
from ctid.acd.strategies import STRATEGIES
from ctid.adapters.corebank.pinblock import PinBlockError, parse_key
from ctid.adapters.ldapdirectoryconfig import (
    DIRECTORY_SCHEMA,
    DirectorySettingError,
    DirectorySettings,
    directory_settings,
)
from ctid.adapters.pbxsim.settings import SettingsError, SimulatorSettings
from ctid.ivr.loader import load_library
from ctid.ivr.model import FlowError, FlowLibrary
from ctid.ivr.tts import VOICES, missing_programs
from ctid.recordingsettings import RECORDING_SCHEMA, RecordingSettings
from ctid.reportsettings import REPORT_SCHEMA, ReportSettings
from ctid.routeload import load_routes
from ctid.routing import RouteError, RouteTable
from ctid.waitpolicy import POLICY_KEYS, WaitPolicy


class ConfigError(Exception):
    """A configuration problem, phrased as one line for the operator."""


@dataclass(frozen=True)
class DaemonSettings:
    """[ctid]: the daemon itself."""

    log_level: str = "info"
    log_file: str = ""


@dataclass(frozen=True)
class AMISettings:
    """[ami]: the persistent manager connection to Asterisk (or the simulator)."""

    endpoint: str = "tcp:127.0.0.1:5038:timeout=5"
    username: str = "ctid"
    secret: str = dataclasses.field(default="", repr=False)
    md5: bool = True
    ping_interval: float = 20.0
    ping_timeout: float = 5.0
    action_timeout: float = 10.0


@dataclass(frozen=True)
class FastAGISettings:
    """[fastagi]: the FastAGI server Asterisk's AGI() connects to."""

    endpoint: str = "tcp:4573:interface=127.0.0.1"
    command_timeout: float = 30.0


@dataclass(frozen=True)
class ManholeSettings:
    """[manhole]: the debugging shell (telnet or SSH, localhost only)."""

    enabled: bool = False
    kind: str = "telnet"
    endpoint: str = "tcp:6023:interface=127.0.0.1"
    username: str = "admin"
    password: str = dataclasses.field(default="", repr=False)
    host_key: str = "var/manhole_host_key"
    authorized_keys: str = ""


@dataclass(frozen=True)
class DatabaseSettings:
    """[database]: ctid's own SQL database (directory now; records later)."""

    url: str = dataclasses.field(default="sqlite:///var/ctid.sqlite", repr=False)
    threads: int = 4


@dataclass(frozen=True)
class RecordSettings:
    """[records]: the write-behind of records (CDRs, service logs…) and its spool."""

    spool: str = "var/records.spool"
    batch_size: int = 500
    flush_interval: float = 0.2
    max_queue: int = 20000
    fsync_interval: float = 1.0


@dataclass(frozen=True)
class CustomerSettings:
    """[customers]: the customer directory behind the screen pop."""

    account_key: str = dataclasses.field(default="", repr=False)
    lookup_timeout: float = 0.5


@dataclass(frozen=True)
class CTISettings:
    """[cti]: the CTI server agents' desktops and CRM toolbars connect to."""

    endpoint: str = "tcp:7070:interface=127.0.0.1"
    heartbeat: float = 15.0
    resume_grace: float = 60.0
    rate: float = 50.0
    burst: int = 100
    max_per_address: int = 20
    allow_plaintext_login: str = "localhost"


@dataclass(frozen=True)
class AgentSettings:
    """[agents]: agent state rules."""

    wrap_up_time: float = 10.0
    not_hung_up_after: float = 30.0
    station_prefix: str = "PJSIP/"
    outbound_caller_id: str = ""


@dataclass(frozen=True)
class ACDSettings:
    """[acd] and the [queue:NAME] sections: queues, where calls go, VIPs, caller cities."""

    queues: tuple[QueueConfig, ...] = (QueueConfig("general", "accounts"),)
    default_queue: str = "general"
    ring_time: int = 15
    vip_numbers: tuple[str, ...] = ()
    vip_prefixes: tuple[str, ...] = ()
    vip_priority: int = 10
    cities: tuple[tuple[str, str], ...] = ()
    routes: RouteTable | None = None
    waiting: tuple[tuple[str, WaitPolicy], ...] = ()

    def wait_policy(self, queue: str) -> WaitPolicy:
        """The wait policy of ``queue`` (music only unless its section sets one)."""
        return dict(self.waiting).get(queue, WaitPolicy())


@dataclass(frozen=True)
class IVRSettings:
    """[ivr]: the IVR flows (conf/ivr), their prompt manifest, language, core-banking timeout, recordings."""

    flows: str = ""
    prompts: str = "prompts/manifest.yaml"
    default_language: str = "zh"
    operation_timeout: float = 10.0
    voice_dir: str = "/var/spool/asterisk/ctid-voice"
    tts: str = "none"
    tts_directory: str = "var/tts"
    tts_timeout: float = 10.0
    library: FlowLibrary | None = None


@dataclass(frozen=True)
class CoreBankSettings:
    """[corebank]: the core-banking gateway — the sandbox bank or an ISO 8583 host (docs/corebank.md)."""

    enabled: bool = False
    backend: str = "sandbox"
    database: str = dataclasses.field(default="sqlite:///var/bank.sqlite", repr=False)
    database_threads: int = 2
    sandbox_account_key: str = dataclasses.field(default="", repr=False)
    session_minutes: float = 30.0
    password_change_allowed: bool = False
    host_endpoint: str = "tcp:127.0.0.1:8583:timeout=5"
    terminal_id: str = "CTID0001"
    pool_size: int = 2
    trade_timeout: float = 10.0
    reversal_attempts: int = 3
    breaker_failures: int = 5
    breaker_reset: float = 30.0
    pin_key: str = dataclasses.field(default="", repr=False)
    lockout_attempts: int = 3
    lockout_minutes: float = 30.0


@dataclass(frozen=True)
class PBXSimSettings:
    """[pbxsim]: whether the simulated switch runs inside the daemon, and how."""

    enabled: bool = False
    simulator: SimulatorSettings = SimulatorSettings()


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    path: str
    daemon: DaemonSettings
    ami: AMISettings
    fastagi: FastAGISettings
    manhole: ManholeSettings
    pbxsim: PBXSimSettings
    database: DatabaseSettings = DatabaseSettings()
    cti: CTISettings = CTISettings()
    agents: AgentSettings = AgentSettings()
    acd: ACDSettings = ACDSettings()
    customers: CustomerSettings = CustomerSettings()
    records: RecordSettings = RecordSettings()
    reports: ReportSettings = ReportSettings()
    recording: RecordingSettings = RecordingSettings()
    ivr: IVRSettings = IVRSettings()
    corebank: CoreBankSettings = CoreBankSettings()
    directory: DirectorySettings = DirectorySettings()


LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError(f"must be greater than 0, got {text!r}")
        return value

    return parse


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise ValueError(f"must not be negative, got {text!r}")
        return value

    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {text!r}")
    return value


def _words(text: str) -> tuple[str, ...]:
    words = tuple(text.replace(",", " ").split())
    if not words:
        raise ValueError("must list at least one value")
    return words


def _range(text: str) -> tuple[float, float]:
    parts = text.replace(",", " ").split()
    if len(parts) != 2:
        raise ValueError(f"expected two numbers 'low high', got {text!r}")
    low, high = float(parts[0]), float(parts[1])
    if low < 0 or high < low:
        raise ValueError(f"expected 0 <= low <= high, got {text!r}")
    return low, high


def _database_url(text: str) -> str:
    """A SQLAlchemy URL for SQLite or MySQL through PyMySQL."""
    try:
        url = make_url(text.strip())
    except Exception as e:
        raise ValueError(f"not a database URL: {e}") from None
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "mysql+pymysql"):
        raise ValueError(f"use sqlite:///PATH or mysql+pymysql://USER:PASSWORD@HOST/DB, not {url.drivername!r}")
    return text.strip()


def _optional_words(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


def _cities(text: str) -> tuple[tuple[str, str], ...]:
    """``prefix=City`` pairs, e.g. ``021=Shanghai 010=Beijing``."""
    pairs = []
    for item in text.replace(",", " ").split():
        prefix, sep, city = item.partition("=")
        if not sep or not prefix.isdigit() or not city:
            raise ValueError(f"expected prefix=City pairs such as 021=Shanghai, got {item!r}")
        pairs.append((prefix, city))
    return tuple(pairs)


def _key(text: str) -> str:
    if len(text.strip().encode("utf-8")) < 16:
        raise ValueError("must be at least 16 bytes")
    return text.strip()


def _strategy(text: str) -> str:
    if text.strip() not in STRATEGIES:
        raise ValueError(f"expected one of {', '.join(STRATEGIES)}, got {text!r}")
    return text.strip()


def _level(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return lowered


def _text(text: str) -> str:
    return text.strip()


def _caller_id(text: str) -> str:
    """Empty, a number, or ``"Name" <number>`` (what an AMI Originate's CallerID takes)."""
    value = text.strip()
    if value and not re.fullmatch(r'(?:"[^"\x00-\x1f]{0,40}" ?)?<\+?[0-9]{2,24}>|\+?[0-9]{2,24}', value):
        raise ValueError(f'expected a number or "Name" <number>, got {value!r}')
    return value


def _required(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _server_endpoint(text: str) -> str:
    """Check a listening endpoint string by parsing it (nothing is opened)."""
    return _endpoint(serverFromString, text)


def _client_endpoint(text: str) -> str:
    """Check a connecting endpoint string by parsing it (nothing is opened).

    ``ssl:`` is refused: it checks neither the certificate's issuer nor the
    host name by default; ``tls:HOST:PORT[:trustRoots=DIR]`` checks both.
    """
    if text.strip().startswith("ssl:"):
        raise ValueError("ssl: client endpoints do not verify the server; use tls:HOST:PORT:trustRoots=CA_FOLDER")
    return _endpoint(clientFromString, text)


def _endpoint(parse_with: Callable[[Any, str], Any], text: str) -> str:
    try:
        parse_with(MemoryReactor(), text.strip())
    except Exception as e:  # the endpoint parsers raise ValueError, TypeError, KeyError, OSError…
        why = "a file or folder it names cannot be read" if type(e).__name__ == "UnlistableError" else e
        raise ValueError(f"invalid endpoint {text.strip()!r}: {why}") from None
    return text.strip()


def _local_endpoint(text: str) -> str:
    """A listening endpoint bound to a loopback interface only."""
    _server_endpoint(text)
    options = dict(part.split("=", 1) for part in text.strip().split(":")[2:] if "=" in part)
    interface = options.get("interface", "")
    try:
        loopback = ipaddress.ip_address(interface).is_loopback
    except ValueError:
        loopback = interface == "localhost"
    if not text.strip().startswith(("tcp:", "tcp6:", "unix:")) or (not text.startswith("unix:") and not loopback):
        raise ValueError(f"must listen on localhost only (tcp:PORT:interface=127.0.0.1), got {text!r}")
    return text.strip()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip() not in choices:
            raise ValueError(f"expected {' or '.join(choices)}, got {text!r}")
        return text.strip()

    return parse


def _corebank_backend(text: str) -> str:
    if text.strip() not in ("sandbox", "iso8583"):
        raise ValueError(f"expected sandbox or iso8583, got {text!r}")
    return text.strip()


def _terminal_id(text: str) -> str:
    if len(text.strip()) != 8 or not text.strip().isascii() or not text.strip().isalnum():
        raise ValueError("must be 8 letters or digits")
    return text.strip()


def _pin_key(text: str) -> str:
    """32 or 48 hex digits (a double- or triple-length TDES key); never quoted in the error."""
    try:
        parse_key(text)
    except PinBlockError as e:
        raise ValueError(str(e)) from None
    return text.strip()


# section -> key -> parser; the keys are the whitelist.
SCHEMA: dict[str, dict[str, Callable[[str], Any]]] = {
    "ctid": {"log_level": _level, "log_file": _text},
    "ami": {
        "endpoint": _client_endpoint,
        "username": _required,
        "secret": _required,
        "md5": _bool,
        "ping_interval": _positive(float),
        "ping_timeout": _positive(float),
        "action_timeout": _positive(float),
    },
    "fastagi": {"endpoint": _server_endpoint, "command_timeout": _positive(float)},
    "manhole": {"enabled": _bool, "kind": _choice("telnet", "ssh"), "endpoint": _local_endpoint,
                "username": _required, "password": _text, "host_key": _required, "authorized_keys": _text},
    "database": {"url": _database_url, "threads": _positive(int)},
    "records": {"spool": _required, "batch_size": _positive(int), "flush_interval": _positive(float),
                "max_queue": _positive(int), "fsync_interval": _positive(float)},
    "cti": {
        "endpoint": _server_endpoint,
        "heartbeat": _positive(float),
        "resume_grace": _positive(float),
        "rate": _positive(float),
        "burst": _positive(int),
        "max_per_address": _positive(int),
        "allow_plaintext_login": _choice("localhost", "no"),
    },
    "agents": {
        "wrap_up_time": _non_negative(float),
        "not_hung_up_after": _positive(float),
        "station_prefix": _required,
        "outbound_caller_id": _caller_id,
    },
    "customers": {"account_key": _key, "lookup_timeout": _positive(float)},
    "reports": REPORT_SCHEMA,
    "recording": RECORDING_SCHEMA,
    "ivr": {"flows": _text, "prompts": _required, "default_language": _required,
            "operation_timeout": _positive(float), "voice_dir": _required, "tts": _choice("none", "espeak"),
            "tts_directory": _required, "tts_timeout": _positive(float)},
    "directory": DIRECTORY_SCHEMA,
    "corebank": {"enabled": _bool, "backend": _corebank_backend, "database": _database_url,
                 "database_threads": _positive(int), "sandbox_account_key": _key, "session_minutes": _positive(float),
                 "password_change_allowed": _bool, "host_endpoint": _client_endpoint, "terminal_id": _terminal_id,
                 "pool_size": _positive(int), "trade_timeout": _positive(float), "reversal_attempts": _positive(int),
                 "breaker_failures": _positive(int), "breaker_reset": _positive(float), "pin_key": _pin_key,
                 "lockout_attempts": _positive(int), "lockout_minutes": _positive(float)},
    "acd": {
        "routes": _text,
        "default_queue": _required,
        "ring_time": _positive(int),
        "vip_numbers": _optional_words,
        "vip_prefixes": _optional_words,
        "vip_priority": _positive(int),
        "cities": _cities,
    },
    "pbxsim": {
        "enabled": _bool,
        "ami_endpoint": _server_endpoint,
        "agi_endpoint": _client_endpoint,
        "agi_script": _required,
        "username": _required,
        "secret": _required,
        "seed": int,
        "calls_per_minute": _non_negative(float),
        "agents": _words,
        "dnis": _words,
        "ivr_share": _share,
        "outbound_share": _share,
        "answer_delay": _range,
        "no_answer_rate": _share,
        "talk_time": _range,
        "patience": _range,
        "max_calls": _non_negative(int),
        "supervisors": _words,
        "direct_prefix": _required,
        "direct_ring": _positive(int),
        "hold_rate": _share,
        "agi_timeout": _positive(float),
        "ami_write_buffer": _positive(int),
        "ami_auth_timeout": _positive(float),
        "media_speed": _positive(float),
        "desktops": _bool,
        "cti_endpoint": _client_endpoint,
        "desktop_password": _text,
    },
}
REQUIRED = {"ami": ("secret",)}
QUEUE_SCHEMA: dict[str, Callable[[str], Any]] = {
    "group": _required,
    "strategy": _strategy,
    "min_level": _positive(int),
    "priority": _non_negative(int),
    "local_preference": _bool,
    "overflow_after": _non_negative(float),
    "max_wait": _positive(float),
    "max_length": _positive(int),
    "announce_every": _non_negative(float),
    "offer_voicemail": _bool,
    "offer_callback": _bool,
    "callback_attempts": _positive(int),
    "callback_retry": _positive(float),
    "callback_ring": _positive(float),
}


def _ivr(path: str, values: dict[str, Any]) -> IVRSettings:
    """[ivr]: load and validate the flows and the prompt manifest (paths relative to the configuration's folder)."""
    settings = IVRSettings(**values)
    missing = missing_programs() if settings.tts == "espeak" else []
    if missing:
        raise ConfigError(f"{path}: [ivr] tts: espeak needs {' and '.join(missing)} (Debian: apt-get install "
                          "espeak-ng sox), or set tts = none")
    if not settings.flows:
        return settings
    folder = os.path.dirname(path)
    speech = frozenset(VOICES) if settings.tts == "espeak" else frozenset()
    try:
        library = load_library(os.path.join(folder, settings.flows), os.path.join(folder, settings.prompts), speech)
    except FlowError as e:
        raise ConfigError(f"{path}: [ivr] flows: {e}") from None
    if settings.default_language not in library.manifest.languages:
        raise ConfigError(f"{path}: [ivr] default_language: {settings.default_language!r} is not in the prompt "
                          f"manifest (it has {', '.join(library.manifest.languages)})")
    return dataclasses.replace(settings, library=library)


def _routes(path: str, routes_file: str, queues: set[str], flows: set[str]) -> RouteTable:
    """Load the route rules named by [acd] routes (relative to the configuration file's folder).

    IVR targets must name one of ``flows`` (the [ivr] flows; none without them).
    """
    full = os.path.join(os.path.dirname(path), routes_file)
    try:
        table = load_routes(full, queues, known_flows=flows)
    except RouteError as e:
        raise ConfigError(f"{path}: [acd] routes: {e}") from None
    return table


def _queues(parser: configparser.ConfigParser, path: str) -> tuple[tuple[QueueConfig, WaitPolicy], ...]:
    """Each [queue:NAME] section: its ACD settings and its wait policy."""
    queues = []
    for section in parser.sections():
        if not section.startswith("queue:"):
            continue
        name = section[len("queue:"):].strip()
        values: dict[str, Any] = {}
        for key, raw in parser.items(section):
            if key not in QUEUE_SCHEMA:
                raise ConfigError(f"{path}: [{section}] {key}: unknown setting (known: {', '.join(QUEUE_SCHEMA)})")
            try:
                values[key] = QUEUE_SCHEMA[key](raw)
            except ValueError as e:
                raise ConfigError(f"{path}: [{section}] {key}: {e}") from None
        if "group" not in values:
            raise ConfigError(f"{path}: [{section}] group: missing required setting")
        policy = {key: values.pop(key) for key in POLICY_KEYS if key in values}
        try:
            queues.append((QueueConfig(name, **values), WaitPolicy(**policy)))
        except ValueError as e:
            raise ConfigError(f"{path}: [{section}]: {e}") from None
    return tuple(queues)


def _section(parser: configparser.ConfigParser, path: str, name: str) -> dict[str, Any]:
    schema = SCHEMA[name]
    values: dict[str, Any] = {}
    if not parser.has_section(name):
        return values
    for key, raw in parser.items(name):
        if key not in schema:
            raise ConfigError(f"{path}: [{name}] {key}: unknown setting (known: {', '.join(schema)})")
        try:
            values[key] = schema[key](raw)
        except ValueError as e:
            raise ConfigError(f"{path}: [{name}] {key}: {e}") from None
    return values


def _directory(path: str, values: dict[str, Any]) -> DirectorySettings:
    """[directory]: the keys that depend on each other (docs/directory.md)."""
    try:
        return directory_settings(values)
    except DirectorySettingError as e:
        raise ConfigError(f"{path}: [directory] {e.key}: {e}") from None


def _corebank(path: str, values: dict[str, Any]) -> CoreBankSettings:
    """[corebank]: the iso8583 backend needs a PIN key."""
    settings = CoreBankSettings(**values)
    if settings.enabled and settings.backend == "iso8583" and not settings.pin_key:
        raise ConfigError(f"{path}: [corebank] pin_key: required when backend = iso8583")
    return settings


def parse(text: str, path: str = "<string>") -> Config:
    """Validate configuration ``text``; ``path`` names it in errors."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__no_defaults__")
    try:
        parser.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError(f"{path}: {' '.join(str(e).split())}") from None
    for name in parser.sections():
        if name not in SCHEMA and not name.startswith("queue:"):
            raise ConfigError(f"{path}: [{name}]: unknown section (known: {', '.join(SCHEMA)})")
    sections = {name: _section(parser, path, name) for name in SCHEMA}
    for name, keys in REQUIRED.items():
        for key in keys:
            if key not in sections[name]:
                raise ConfigError(f"{path}: [{name}] {key}: missing required setting")
    manhole = ManholeSettings(**sections["manhole"])
    keys_only = manhole.kind == "ssh" and bool(manhole.authorized_keys) and not manhole.password
    if manhole.enabled and len(manhole.password) < 8 and not keys_only:
        raise ConfigError(f"{path}: [manhole] password: needs at least 8 characters when the manhole is enabled"
                          " (an SSH manhole may use authorized_keys alone)")
    sim = dict(sections["pbxsim"])
    enabled = sim.pop("enabled", False)
    try:
        simulator = SimulatorSettings(**sim)
    except SettingsError as e:
        raise ConfigError(f"{path}: [pbxsim] {e}") from None
    acd = dict(sections["acd"])
    queues = _queues(parser, path)
    if queues:
        acd["queues"] = tuple(queue for queue, _ in queues)
        acd["waiting"] = tuple((queue.name, policy) for queue, policy in queues if policy != WaitPolicy())
    routes_file = acd.pop("routes", "")
    acd_settings = ACDSettings(**acd)
    if acd_settings.default_queue not in {q.name for q in acd_settings.queues}:
        raise ConfigError(f"{path}: [acd] default_queue: no [queue:{acd_settings.default_queue}] section")
    ivr = _ivr(path, sections["ivr"])
    if routes_file:
        flows = set(ivr.library.flows) if ivr.library is not None else set()
        table = _routes(path, routes_file, {q.name for q in acd_settings.queues}, flows)
        acd_settings = dataclasses.replace(acd_settings, routes=table)
    return Config(
        path=path,
        daemon=DaemonSettings(**sections["ctid"]),
        ami=AMISettings(**sections["ami"]),
        fastagi=FastAGISettings(**sections["fastagi"]),
        manhole=manhole,
        pbxsim=PBXSimSettings(enabled=enabled, simulator=simulator),
        database=DatabaseSettings(**sections["database"]),
        cti=CTISettings(**sections["cti"]),
        agents=AgentSettings(**sections["agents"]),
        acd=acd_settings,
        customers=CustomerSettings(**sections["customers"]),
        records=RecordSettings(**sections["records"]),
        reports=ReportSettings(**sections["reports"]),
        recording=RecordingSettings(**sections["recording"]),
        ivr=ivr,
        corebank=_corebank(path, sections["corebank"]),
        directory=_directory(path, sections["directory"]),
    )


def load(path: str) -> Config:
    """Read and validate the configuration file at ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse(text, path)
