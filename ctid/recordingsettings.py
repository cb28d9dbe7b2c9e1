"""The ``[recording]`` settings: the recording policy, where the files are, downloads, the satisfaction survey.

:data:`RECORDING_SCHEMA` is the section's whitelist of keys and their
parsers (used by :mod:`ctid.config`); :class:`RecordingSettings` the frozen
result.  docs/recording.md explains each choice.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

__all__ = ["FILE_FIELDS", "RECORDING_SCHEMA", "RecordingSettings", "file_name"]

#: The fields a ``file_name`` template may use.
FILE_FIELDS = ("date", "time", "call", "leg", "agent", "queue")
_SAFE = re.compile(r"[^0-9A-Za-z_.-]")


@dataclass(frozen=True)
class RecordingSettings:
    """[recording]: what is recorded, where the switch writes it, how it is fetched; the survey."""

    record: str = "none"
    queues: tuple[str, ...] = ()
    on_demand: bool = True
    switch_directory: str = "/var/spool/asterisk/monitor/ctid"
    directory: str = "var/recordings"
    file_name: str = "{date}/{call}-{time}"
    format: str = "wav"
    download_endpoint: str = ""
    download_url: str = "http://127.0.0.1:8089/recordings"
    token_lifetime: float = 60.0
    survey: str = "on_command"
    survey_flow: str = "survey"

    def records_queue(self, queue: str | None) -> bool:
        """Whether the policy records every answered call of ``queue`` by itself."""
        return self.record == "all" or (self.record == "queues" and queue in self.queues)


def file_name(settings: RecordingSettings, at: float, **fields: str | None) -> str:
    """The switch-side path of a new recording: the template filled (unsafe characters as ``_``) + the format."""
    moment = datetime.fromtimestamp(at, UTC)
    values = {name: _SAFE.sub("_", fields.get(name) or "none") for name in FILE_FIELDS}
    values.update(date=moment.strftime("%Y%m%d"), time=moment.strftime("%H%M%S"))
    return f"{settings.switch_directory}/{settings.file_name.format(**values)}.{settings.format}"


def _choice(*choices: str):
    def parse(text: str) -> str:
        if text.strip() not in choices:
            raise ValueError(f"expected {', '.join(choices)}, got {text!r}")
        return text.strip()

    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


def _absolute(text: str) -> str:
    path = text.strip().rstrip("/")
    if not path.startswith("/") or ".." in path.split("/"):
        raise ValueError(f"must be an absolute path on the switch without '..', got {text!r}")
    return path


def _directory(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return os.path.normpath(text.strip())


def _template(text: str) -> str:
    template = text.strip()
    try:
        fields = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise ValueError(f"not a file name template: {e}") from None
    unknown = sorted(set(fields) - set(FILE_FIELDS))
    if unknown or not fields:
        raise ValueError(f"use fields among {{{'}, {'.join(FILE_FIELDS)}}}, got {text!r}")
    literal = re.sub(r"\{\w*\}", "", template)
    if template.startswith("/") or ".." in template or not re.fullmatch(r"[0-9A-Za-z_./-]*", literal):
        raise ValueError(f"must be a relative path of letters, digits, _ . - and / with fields, got {text!r}")
    return template


def _format(text: str) -> str:
    if text.strip() not in ("wav", "WAV", "gsm", "ulaw", "alaw", "sln"):
        raise ValueError(f"expected wav, WAV, gsm, ulaw, alaw or sln, got {text!r}")
    return text.strip()


def _endpoint(text: str) -> str:
    if not text.strip():
        return ""
    try:
        serverFromString(MemoryReactor(), text.strip())
    except Exception as e:  # the endpoint parsers raise ValueError, TypeError, KeyError, OSError…
        raise ValueError(f"invalid endpoint {text.strip()!r}: {e}") from None
    return text.strip()


def _url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return url


def _seconds(text: str) -> float:
    value = float(text)
    if not 1.0 <= value <= 3600.0:
        raise ValueError(f"must be from 1 to 3600 seconds, got {text!r}")
    return value


def _flow(text: str) -> str:
    if not re.fullmatch(r"[\w.-]{1,64}", text.strip()):
        raise ValueError(f"expected a flow name, got {text!r}")
    return text.strip()


#: [recording] key -> parser; the keys are the whitelist.
RECORDING_SCHEMA = {
    "record": _choice("none", "all", "queues"),
    "queues": _words,
    "on_demand": _bool,
    "switch_directory": _absolute,
    "directory": _directory,
    "file_name": _template,
    "format": _format,
    "download_endpoint": _endpoint,
    "download_url": _url,
    "token_lifetime": _seconds,
    "survey": _choice("off", "on_command", "after_every_call"),
    "survey_flow": _flow,
}
