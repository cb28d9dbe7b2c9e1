"""The AMI server: framing, input limits, the output bound, and the per-connection session.

:class:`AmiServerProtocol` frames bytes (``MessageParser(banner=False)``),
enforces manager.c's input limits (1024-byte lines, 128 header lines) and
drops a client whose unread output passes ``ami_write_buffer`` bytes (what
Asterisk's ``writetimeout`` does to a client that stops reading).
:class:`AmiSession` holds the login state and event mask, runs actions one
at a time in arrival order (:mod:`.amiactions`) and filters the World's
events.  One World is shared by every connection.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from ctid.protocols.amiwire import Message, MessageParser, ProtocolViolation, format_message

from .events import ALL_CLASSES, AMI_VERSION, AmiEvent

if TYPE_CHECKING:  # pragma: no cover
    from .settings import SimulatorSettings
    from .world import World

log = Logger(namespace="ctid.pbxsim")

BANNER = f"Asterisk Call Manager/{AMI_VERSION}\r\n".encode("ascii")
MAX_LINE = 1024             # manager.c: inbuf[1025]
MAX_HEADERS = 128           # manager.c: AST_MAX_MANHEADERS
HARD_LINE = 16 * 1024       # beyond this the connection is dropped
HARD_MESSAGE = 256 * 1024
MAX_BAD_MESSAGES = 10       # consecutive unparseable messages before we hang up on the client
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

Pairs = list[tuple[str, object]]


class AmiSession:
    """Login state, event mask and filters of one AMI connection; runs its actions in order."""

    def __init__(self, proto: AmiServerProtocol, world: World, settings: SimulatorSettings):
        self.proto = proto
        self.world = world
        self.settings = settings
        self.authenticated = False
        self.username = ""
        self.challenge = ""
        self.event_mask = ALL_CLASSES
        self.filters: list[tuple[bool, re.Pattern[str]]] = []
        self.closing = False
        self.bad_messages = 0
        self._queue: deque[Message] = deque()
        self._busy = False

    # -- input --------------------------------------------------------------------------

    def message_received(self, message: Message) -> None:
        self._queue.append(message)
        if not self._busy:
            self._run_queue()

    def _run_queue(self) -> None:
        from .amiactions import dispatch

        while self._queue and not self.closing and not self._busy:
            message = self._queue.popleft()
            try:
                result = dispatch(self, message)
            except Exception:
                log.failure("pbxsim: AMI action failed")
                self.error(message, "Internal error")
                continue
            if isinstance(result, Deferred):
                self._busy = True
                result.addErrback(lambda f: log.failure("pbxsim: AMI action failed", f))
                result.addBoth(self._resume)

    def _resume(self, _: object) -> None:
        self._busy = False
        self._run_queue()

    # -- output -------------------------------------------------------------------------

    def send(self, pairs: Iterable[tuple[str, object]]) -> None:
        """Write one message (a response or a list item)."""
        self.proto.write(format_message(pairs))

    def response(self, message: Message, result: str, text: str | None = None,
                 extra: Iterable[tuple[str, object]] = ()) -> None:
        """``Response: X`` + ActionID + optional ``Message`` + action headers (astman_send_response_full)."""
        pairs: Pairs = [("Response", result)]
        action_id = message.get("ActionID")
        if action_id:
            pairs.append(("ActionID", action_id))
        if text is not None:
            pairs.append(("Message", text))
        self.send(pairs + list(extra))

    def ack(self, message: Message, text: str | None = None, extra: Iterable[tuple[str, object]] = ()) -> None:
        self.response(message, "Success", text, extra)

    def error(self, message: Message, text: str) -> None:
        self.response(message, "Error", text)

    def list_start(self, message: Message, text: str) -> None:
        """``Response: Success`` / ``EventList: start`` (astman_send_listack)."""
        pairs: Pairs = [("Response", "Success")]
        action_id = message.get("ActionID")
        if action_id:
            pairs.append(("ActionID", action_id))
        self.send(pairs + [("EventList", "start"), ("Message", text)])

    def list_item(self, message: Message, name: str, body: Sequence[tuple[str, object]],
                  action_id_last: bool = False) -> None:
        """A list item event: ``Event`` then ActionID (or ActionID last, as Status does)."""
        action_id = message.get("ActionID")
        tail: Pairs = [("ActionID", action_id)] if action_id else []
        if action_id_last:
            self.send([("Event", name), *body, *tail])
        else:
            self.send([("Event", name), *tail, *body])

    def list_complete(self, message: Message, name: str, count: int,
                      extra: Iterable[tuple[str, object]] = ()) -> None:
        """The completion event (astman_send_list_complete_start/end)."""
        action_id = message.get("ActionID")
        pairs: Pairs = [("Event", name)]
        if action_id:
            pairs.append(("ActionID", action_id))
        self.send(pairs + [("EventList", "Complete"), ("ListItems", count)] + list(extra))

    def event(self, event: AmiEvent) -> None:
        """A World event: delivered if logged in and allowed by the mask and filters."""
        if not self.authenticated or self.closing or not (event.mask & self.event_mask):
            return
        if self.filters and not self._passes(event):
            return
        self.proto.write(event.data)

    def _passes(self, event: AmiEvent) -> bool:
        text = event.data.decode("utf-8", "replace")
        includes = [p for keep, p in self.filters if keep]
        if includes and not any(p.search(text) for p in includes):
            return False
        return not any(p.search(text) for keep, p in self.filters if not keep)

    def close(self) -> None:
        self.closing = True
        self.proto.transport.loseConnection()


@implementer(IPushProducer)
class AmiServerProtocol(Protocol):
    """Frames AMI input, enforces limits, bounds buffered output."""

    factory: Any = None
    #: A TCP or TLS connection (``Protocol`` declares only an optional ``ITransport``, without ``abortConnection``).
    transport: ITCPTransport

    def __init__(self, world: World, settings: SimulatorSettings):
        self.world = world
        self.settings = settings
        self.parser = MessageParser(banner=False, max_line=HARD_LINE, max_message=HARD_MESSAGE)
        self.session = AmiSession(self, world, settings)
        self._paused = False
        self._backlog = 0
        self._auth_timer: Any = None
        self._gone = False

    def connectionMade(self) -> None:
        if isinstance(self.factory, AmiServerFactory):
            self.factory.connections.add(self)
        cast(IConsumer, self.transport).registerProducer(self, True)  # TCP transports are consumers
        self.transport.write(BANNER)
        self.world.subscribe(self.session.event)
        self._auth_timer = self.world.clock.callLater(self.settings.ami_auth_timeout, self._auth_timeout)

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if not self.session.authenticated:
            log.info("pbxsim: AMI client did not log in within {seconds} s; closing",
                     seconds=self.settings.ami_auth_timeout)
            self.session.close()

    def logged_in(self) -> None:
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None

    def dataReceived(self, data: bytes) -> None:
        if self._gone or self.session.closing:
            return
        if _BINARY.search(data):
            self._drop("binary data")
            return
        try:
            messages = self.parser.feed(data)
        except ProtocolViolation as violation:
            self._drop(str(violation))
            return
        for message in messages:
            checked = self._check(message)
            if checked is not None:
                self.session.message_received(checked)
            if self._gone:
                return

    def _check(self, message: Message) -> Message | None:
        """manager.c's per-message limits; answers the client itself when they are broken."""
        lines = message.text.split("\n")
        good = [line for line in lines if ":" in line and len(line.encode("utf-8")) <= MAX_LINE]
        problem = None
        if any(len(line.encode("utf-8")) > MAX_LINE for line in lines):
            problem = "Failed to parse message: line too long"
        elif len(lines) > MAX_HEADERS:
            problem = "Too many lines in message or allocation failure"
        elif not good:
            problem = "Missing action in request"
        clean = Message("\n".join(good))
        if problem is None:
            self.session.bad_messages = 0
            return clean
        self.session.error(clean, problem)
        self.session.bad_messages += 1
        if self.session.bad_messages >= MAX_BAD_MESSAGES:
            self._drop(f"{MAX_BAD_MESSAGES} bad messages in a row")
        return None

    def _drop(self, why: str) -> None:
        log.warn("pbxsim: dropping AMI client {peer}: {why}", peer=peer_text(self.transport), why=why)
        self._gone = True
        self.session.closing = True
        self.transport.abortConnection()

    # -- output bound (IPushProducer: the transport tells us when its buffer is full) --------

    def write(self, data: bytes) -> None:
        if self._gone:
            return
        if self._paused:
            self._backlog += len(data)
            if self._backlog > self.settings.ami_write_buffer:
                self._drop(f"client stopped reading ({self._backlog} bytes unsent)")
                return
        self.transport.write(data)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._backlog = 0

    def stopProducing(self) -> None:
        self._gone = True

    def connectionLost(self, reason: object = None) -> None:
        if isinstance(self.factory, AmiServerFactory):
            self.factory.connections.discard(self)
        self._gone = True
        self.session.closing = True
        self.world.unsubscribe(self.session.event)
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None


def peer_text(transport: Any) -> str:
    """``host:port`` of the client, for logs."""
    try:
        peer = transport.getPeer()
        return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
    except Exception:
        return "?"


class AmiServerFactory(Factory):
    """Builds one protocol (and session) per AMI connection; all share ``world``."""

    def __init__(self, world: World, settings: SimulatorSettings):
        self.world = world
        self.settings = settings
        self.connections: set[AmiServerProtocol] = set()

    def buildProtocol(self, addr: Any) -> AmiServerProtocol:
        proto = AmiServerProtocol(self.world, self.settings)
        proto.factory = self
        return proto

    def disconnect_all(self) -> None:
        """Close every client connection (the simulator is shutting down)."""
        for proto in list(self.connections):
            proto.transport.loseConnection()
