"""Who may hear which recording (AG-4, SV-4): list, play on a seat's phone, download.

Rights, checked on every access and every refusal audited:

* an agent hears the recordings of its own calls only;
* a supervisor (or leader) those of the agents it manages — in its scope
  as :class:`ctid.scope.Scope` reads the directory's ``manages`` (skill
  groups and cities) — and its own;
* an admin every recording.

``PlayRecording`` rings a seat (the requester's own station by default)
and plays the file there (``Originate`` into ``Playback``); the seat must
be the requester's own, or — for a supervisor — a seat of an agent it
manages, or any seat for an admin.  ``DownloadRecording`` answers a
one-time URL on the small HTTP(S) server (``[recording]
download_endpoint``) valid for ``token_lifetime`` seconds; the server
hands the file once and forgets the token.  Files are read under
``[recording] directory`` only (the switch's ``switch_directory`` mapped
onto it); an index row naming a file elsewhere is refused.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.engine import Connection
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from twisted.web.static import File

from ctid.adapters.store.schema import recordings
from ctid.directory import DirectoryError, Identity
from ctid.interfaces import IPBX, PBXError
from ctid.protocols.ctiapi import CTIError, CTISession, require_login
from ctid.recording import role_of
from ctid.recordingsettings import RecordingSettings
from ctid.scope import Scope

log = Logger()

#: Most rows ``ListRecordings`` answers.
MAX_ROWS = 200
_COLUMNS = ("record_id", "call_id", "uniqueid", "agent_id", "ani", "extension", "filename", "started_at",
            "stopped_at", "duration_s")


@dataclass(frozen=True)
class Grant:
    """A download the server will hand out once, before ``expires``."""

    path: str
    name: str
    actor: str
    role: str | None
    recording: str
    expires: float


def _epoch(value: Any) -> float | None:
    return None if value is None else value.replace(tzinfo=UTC).timestamp()


def _row(row: Any) -> dict[str, Any]:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["started_at"], data["stopped_at"] = _epoch(data["started_at"]), _epoch(data["stopped_at"])
    return data


def find_recording(connection: Connection, record_id: str) -> dict[str, Any] | None:
    """Runs in the database pool: the recordings index row ``record_id``, or None."""
    row = connection.execute(select(*(recordings.c[name] for name in _COLUMNS))
                             .where(recordings.c.record_id == record_id)).first()
    return None if row is None else _row(row)


def search_recordings(connection: Connection, call_id: str | None, agent_id: str | None, start: float | None,
                      end: float | None, limit: int) -> list[dict[str, Any]]:
    """Runs in the database pool: index rows of a call, or of an agent and/or a time span, oldest first."""
    query = select(*(recordings.c[name] for name in _COLUMNS))
    if call_id is not None:
        query = query.where(recordings.c.call_id == call_id)
    if agent_id is not None:
        query = query.where(recordings.c.agent_id == agent_id)
    if start is not None:
        query = query.where(recordings.c.started_at >= datetime.fromtimestamp(start, UTC).replace(tzinfo=None))
    if end is not None:
        query = query.where(recordings.c.started_at < datetime.fromtimestamp(end, UTC).replace(tzinfo=None))
    rows = connection.execute(query.order_by(recordings.c.started_at).limit(limit)).all()
    return [_row(row) for row in rows]


def _is_file(connection: Connection, path: str) -> bool:
    """Runs in the database pool (a file system may be slow too): whether ``path`` is a readable file."""
    return os.path.isfile(path) and os.access(path, os.R_OK)


@overload
def _text(args: dict[str, Any], name: str, required: Literal[True] = True) -> str: ...


@overload
def _text(args: dict[str, Any], name: str, required: bool) -> str | None: ...


def _text(args: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 64:
        raise CTIError("bad_request", f"{name} must be a non-empty string of at most 64 characters")
    return value


def _seconds(args: dict[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CTIError("bad_request", f"{name} must be epoch seconds")
    return float(value)


class RecordingAccess:
    """The ListRecordings, PlayRecording and DownloadRecording commands, and the download tokens."""

    def __init__(self, settings: RecordingSettings, pool: Any, directory: Any, board: Any, pbx: IPBX, desk: Any,
                 records: Any, clock: Any, cities: Iterable[str] = ()):
        self.settings, self.pool, self.directory, self.board, self.pbx = settings, pool, directory, board, pbx
        #: The city names the ACD knows: entries of a supervisor's ``manages`` that are cities (ctid.scope).
        self.cities = frozenset(cities)
        self.desk, self.records, self.clock = desk, records, clock
        self.grants: dict[str, Grant] = {}
        desk.add("ListRecordings", self.list_command)
        desk.add("PlayRecording", self.play_command)
        desk.add("DownloadRecording", self.download_command)

    # -- rights ---------------------------------------------------------------------------------------------

    async def _identity(self, agent_id: str) -> Identity | None:
        try:
            return await self.directory.lookup(agent_id)
        except DirectoryError:
            raise CTIError("directory_unavailable", "the directory cannot be reached; try again") from None

    async def _me(self, session: CTISession) -> Identity:
        me = await self._identity(require_login(session)["agent"])
        if me is None or not me.enabled:
            raise CTIError("forbidden", "your account is not in the directory")
        return me

    async def manages(self, me: Identity, agent_id: str | None) -> bool:
        """Whether ``me`` may act on what agent ``agent_id`` did (its recordings, its seat)."""
        if me.has_role("admin") or (agent_id is not None and agent_id == me.agent_id):
            return True
        if agent_id is None or not (me.has_role("supervisor") or me.has_role("leader")):
            return False
        other = await self._identity(agent_id)
        return other is not None and Scope.of(me, self.cities).covers(other.skills, other.city)

    async def _seat(self, me: Identity, session: CTISession, station: str | None) -> str:
        own = require_login(session)["station"]
        if station is None:
            return own
        station = station if "/" in station else self.desk.station_prefix + station
        if station == own or me.has_role("admin"):
            return station
        agent = self.board.by_station(station)
        if agent is not None and agent.agent_id != me.agent_id and await self.manages(me, agent.agent_id):
            return station
        raise CTIError("forbidden_seat", "you may not play recordings on that seat")

    def _audit(self, session: CTISession, action: str, target: str | None, outcome: str, detail: str = "") -> None:
        identity = require_login(session)
        self.records.audit(identity["agent"], role_of(identity), session.peer, action, target, outcome, detail)

    async def _guarded(self, session: CTISession, action: str, target: str | None, work: Any) -> dict[str, Any]:
        try:
            answer, detail = await work
        except CTIError as e:
            self._audit(session, action, target, e.code)
            raise
        self._audit(session, action, target, "ok", detail)
        return answer

    async def _recording(self, me: Identity, record_id: str) -> dict[str, Any]:
        row = await self.pool.run(find_recording, record_id)
        if row is None:
            raise CTIError("no_such_recording", "no recording with that id")
        if not await self.manages(me, row["agent_id"]):
            raise CTIError("forbidden", "you may not hear that recording")
        return row

    # -- the commands ---------------------------------------------------------------------------------------

    def list_command(self, session: CTISession, args: dict[str, Any]) -> Any:
        """Recordings of a call, or of an agent and/or a time span, that the requester may hear."""
        return self._guarded(session, "recording_list", args.get("call") or args.get("agent"), self._list(session,
                                                                                                        args))

    async def _list(self, session: CTISession, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        call_id, agent_id = _text(args, "call", False), _text(args, "agent", False)
        start, end = _seconds(args, "from"), _seconds(args, "to")
        limit = args.get("limit", 50)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ROWS:
            raise CTIError("bad_request", f"limit must be a whole number from 1 to {MAX_ROWS}")
        if call_id is None and agent_id is None and start is None:
            raise CTIError("bad_request", "give a call, an agent or a time span (from, to)")
        me = await self._me(session)
        if agent_id is not None and not await self.manages(me, agent_id):
            raise CTIError("forbidden", "you may not hear that agent's recordings")
        rows = await self.pool.run(search_recordings, call_id, agent_id, start, end, limit)
        allowed = [row for row in rows if await self.manages(me, row["agent_id"])]
        return {"recordings": [self.view(row) for row in allowed], "truncated": len(rows) == limit}, \
            f"{len(allowed)} of {len(rows)}"

    def play_command(self, session: CTISession, args: dict[str, Any]) -> Any:
        """Ring a seat and play the recording there."""
        return self._guarded(session, "recording_play", args.get("recording"), self._play(session, args))

    async def _play(self, session: CTISession, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        record_id, station = _text(args, "recording"), _text(args, "station", False)
        me = await self._me(session)
        row = await self._recording(me, record_id)
        seat = await self._seat(me, session, station)
        sound = self._switch_file(row)
        try:
            channel_id = await self.pbx.originate(seat, application="Playback", data=sound.rpartition(".")[0],
                                                  caller_id=f'"Recording" <{record_id[:20]}>', timeout=30.0,
                                                  channel_id=f"ctid-play-{uuid.uuid4().hex}")
        except PBXError as e:
            raise CTIError("switch_error", f"the switch did not ring the seat: {e}") from None
        return {"recording": record_id, "station": seat, "channel": channel_id}, f"on {seat}"

    def download_command(self, session: CTISession, args: dict[str, Any]) -> Any:
        """A one-time, time-limited URL to fetch the recording's file."""
        return self._guarded(session, "recording_download", args.get("recording"), self._download(session, args))

    async def _download(self, session: CTISession, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        record_id = _text(args, "recording")
        if not self.settings.download_endpoint:
            raise CTIError("download_disabled", "recordings cannot be downloaded here ([recording] download_endpoint)")
        me = await self._me(session)
        row = await self._recording(me, record_id)
        path = self.local_path(self._switch_file(row))
        if not await self.pool.run(_is_file, path):
            raise CTIError("file_missing", "the recording's file is not on the recording server")
        self._expire()
        token = secrets.token_urlsafe(24)
        expires = self.clock.seconds() + self.settings.token_lifetime
        name = os.path.basename(path)
        self.grants[token] = Grant(path, name, me.agent_id, role_of(require_login(session)), record_id, expires)
        return {"recording": record_id, "url": f"{self.settings.download_url}/{token}", "file": name,
                "expires": expires}, name

    # -- files ------------------------------------------------------------------------------------------------

    def _switch_file(self, row: dict[str, Any]) -> str:
        """The row's file on the switch, checked to lie under ``switch_directory``."""
        name = row["filename"] or ""
        prefix = self.settings.switch_directory + "/"
        if not name.startswith(prefix) or ".." in name.split("/"):
            raise CTIError("file_missing", "the recording's file is not in the recordings folder")
        return name

    def local_path(self, switch_file: str) -> str:
        """Where ctid reads ``switch_file``: the same path under ``[recording] directory``; never outside it."""
        root = os.path.realpath(self.settings.directory)
        path = os.path.realpath(os.path.join(root, switch_file[len(self.settings.switch_directory) + 1:]))
        if os.path.commonpath([root, path]) != root:
            raise CTIError("file_missing", "the recording's file is not in the recordings folder")
        return path

    def redeem(self, token: str, address: str) -> Grant | None:
        """The grant behind ``token`` (used up now), or None when unknown or expired; audited either way."""
        self._expire()
        grant = self.grants.pop(token, None)
        if grant is None:
            self.records.audit("anonymous", None, address, "recording_fetch", None, "bad_token")
            return None
        self.records.audit(grant.actor, grant.role, address, "recording_fetch", grant.recording, "ok", grant.name)
        return grant

    def _expire(self) -> None:
        now = self.clock.seconds()
        for token in [t for t, grant in self.grants.items() if grant.expires <= now]:
            del self.grants[token]

    @staticmethod
    def view(row: dict[str, Any]) -> dict[str, Any]:
        """An index row as clients see it."""
        return {"recording": row["record_id"], "call": row["call_id"], "agent": row["agent_id"], "ani": row["ani"],
                "extension": row["extension"], "started_at": row["started_at"], "stopped_at": row["stopped_at"],
                "duration": round(row["duration_s"], 1), "file": os.path.basename(row["filename"] or "")}


class _Downloads(Resource):
    """``GET <download_url>/<token>``: the granted file, once; 404 for an unknown or expired token."""

    def __init__(self, access: RecordingAccess):
        super().__init__()
        self.access = access

    def getChild(self, path: bytes, request: Any) -> IResource:
        token = path.decode("ascii", "replace")
        peer = request.getClientAddress()
        address = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        grant = self.access.redeem(token, address) if request.method == b"GET" and not request.postpath else None
        if grant is None:
            return notFound("Not found", "unknown or expired download")
        request.setHeader(b"content-disposition", f'attachment; filename="{grant.name}"'.encode("ascii", "replace"))
        request.setHeader(b"cache-control", b"no-store")
        return File(grant.path, defaultType="application/octet-stream")


def download_service(access: RecordingAccess, endpoint: str, reactor: Any) -> StreamServerEndpointService:
    """The download server (named ``recordings-http``): ``<download_url>/<token>`` answers the file once."""
    resource: Resource = _Downloads(access)
    for segment in reversed([s for s in urlsplit(access.settings.download_url).path.split("/") if s]):
        parent = Resource()
        parent.putChild(segment.encode("utf-8"), resource)
        resource = parent
    site = Site(resource)
    site.displayTracebacks = False
    service = StreamServerEndpointService(serverFromString(reactor, endpoint), site)
    service.setName("recordings-http")
    return service
