"""The API a FastAGI script (the IVR) works with: :class:`AGISession`.

One session per call, made by :class:`ctid.protocols.fastagi.FastAGIProtocol`
once the environment block is read.  Each method sends one AGI command
through the protocol (which queues, pairs and times it out) and turns the
reply into what the script wants: the digit pressed, the digits collected,
a variable's value.  A media command's ``result=-1`` becomes
:class:`AGIHangupError` or :class:`AGICommandError`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from ctid.protocols.agiwire import AGICommandError, AGIEnvironment, AGIHangupError, AGIReply

if TYPE_CHECKING:
    from ctid.protocols.fastagi import FastAGIProtocol

__all__ = ["AGISession"]

#: Asterisk's digit timeout when GET DATA is given 0 (used only to size our own timer).
_DEFAULT_DIGIT_TIMEOUT_MS = 10_000


def _digit(reply: AGIReply) -> str | None:
    """The DTMF digit a media command reports (ASCII code in ``result``), or None."""
    code = reply.result_int
    return chr(code) if code is not None and 0 < code < 0x110000 else None


class AGISession:
    """What a FastAGI script works with: the environment and the AGI commands.

    Every command method returns a coroutine (wrap with
    ``Deferred.fromCoroutine`` if you need a Deferred) and may raise the
    errors of :meth:`~ctid.protocols.fastagi.FastAGIProtocol.send_command`.
    Media commands whose result is -1 raise :class:`AGIHangupError` when the
    caller hung up and :class:`AGICommandError` otherwise (a missing sound
    file, for example); to tell the two apart when ``HANGUP`` has not arrived
    yet, the session sends one dead-safe ``NOOP``, which Asterisk answers only
    after reporting the hang-up.  ``sensitive=True`` keeps a command's arguments and reply out of
    the logs.  :attr:`last_reply` holds the reply of the last command (for
    ``endpos``).
    """

    def __init__(self, protocol: FastAGIProtocol):
        assert protocol.env is not None
        self._protocol = protocol
        #: The ``agi_*`` variables.
        self.env: AGIEnvironment = protocol.env
        #: The last :class:`AGIReply` received through this session.
        self.last_reply: AGIReply | None = None
        #: The name of the last command sent (for logs).
        self.last_command: str | None = None

    @property
    def hung_up(self) -> bool:
        """True once Asterisk reported ``HANGUP`` or the connection closed."""
        return self._protocol.hung_up

    def when_hung_up(self) -> Deferred[None]:
        """A Deferred firing (with None) when the caller hangs up or the connection closes."""
        return self._protocol.when_hung_up()

    def log_fields(self) -> dict[str, str]:
        """Structured fields naming this session, for the script's own log events."""
        return self._protocol.log_fields()

    def close(self) -> Deferred[None]:
        """End the AGI: close the socket so the dialplan continues; fires once closed."""
        return self._protocol.close()

    async def send_command(
        self, command: str, *args: str | int, sensitive: bool = False, timeout: float | None = None
    ) -> AGIReply:
        """Send any AGI command (arguments are quoted for you) and return its reply."""
        reply = self.last_reply = await self._send(
            " ".join(command.upper().split()), *args, sensitive=sensitive, timeout=timeout
        )
        return reply

    def _send(
        self, command: str, *args: str | int, sensitive: bool = False, timeout: float | None = None
    ) -> Deferred[AGIReply]:
        """Hand ``command`` (an upper-case name) to the protocol; the callers await it and keep the reply."""
        self.last_command = command
        return self._protocol.send_command(command, *args, sensitive=sensitive, timeout=timeout)

    async def _media(
        self, command: str, *args: str | int, extra: float = 0.0, timeout: float | None = None, sensitive: bool = False
    ) -> AGIReply:
        if timeout is None:
            timeout = self._protocol.command_timeout + extra
        reply = self.last_reply = await self._send(command, *args, sensitive=sensitive, timeout=timeout)
        if reply.result_int == -1:
            await self._failed(command, reply, sensitive)
        return reply

    async def _failed(self, command: str, reply: AGIReply, sensitive: bool) -> None:
        """Raise the right error for ``result=-1``: hang-up, or a failure of the command."""
        if reply.data != "hangup" and not self.hung_up:
            try:
                await self._protocol.send_command("NOOP")
            except AGIHangupError:
                pass
        if reply.data == "hangup" or self.hung_up:
            raise AGIHangupError(f"caller hung up during {command}")
        detail = f" ({reply.data})" if reply.data and not sensitive else ""
        raise AGICommandError(-1, "failed" + detail, command)

    async def answer(self) -> None:
        """Answer the channel."""
        await self._media("ANSWER")

    async def stream_file(
        self, filename: str, escape_digits: str = "", offset: int | None = None, *, timeout: float | None = None
    ) -> str | None:
        """Play ``filename``; return the escape digit pressed, or None if it played to the end.

        ``last_reply.endpos`` is the sample where playback stopped.  Long
        prompts may need a ``timeout`` above the default command timeout.
        """
        extra = () if offset is None else (offset,)
        return _digit(await self._media("STREAM FILE", filename, escape_digits, *extra, timeout=timeout))

    async def get_data(
        self, filename: str, timeout_ms: int = 5000, max_digits: int | None = None, *, sensitive: bool = False
    ) -> tuple[str, bool]:
        """Play ``filename`` and collect DTMF; return ``(digits, timed_out)``.

        Asterisk allows ``timeout_ms`` per digit, so our own timer is the
        command timeout plus that for every digit expected.
        """
        extra = () if max_digits is None else (max_digits,)
        per_digit = (timeout_ms if timeout_ms > 0 else _DEFAULT_DIGIT_TIMEOUT_MS) / 1000
        reply = await self._media(
            "GET DATA", filename, timeout_ms, *extra, extra=per_digit * (max_digits or 1), sensitive=sensitive
        )
        return reply.result, reply.data == "timeout"

    async def wait_for_digit(self, timeout_ms: int, *, sensitive: bool = False) -> str | None:
        """Wait up to ``timeout_ms`` (-1: forever) for one digit; None if none came."""
        timeout = math.inf if timeout_ms < 0 else None
        reply = await self._media(
            "WAIT FOR DIGIT", timeout_ms, extra=max(timeout_ms, 0) / 1000, timeout=timeout, sensitive=sensitive
        )
        return _digit(reply)

    async def say_digits(self, digits: str | int, escape_digits: str = "", *, sensitive: bool = False) -> str | None:
        """Say ``digits`` one by one; return the escape digit pressed, or None.

        Our timer allows a second per digit on top of the command timeout.
        """
        extra = float(len(str(digits)))
        return _digit(await self._media("SAY DIGITS", digits, escape_digits, extra=extra, sensitive=sensitive))

    async def say_number(
        self, number: int | str, escape_digits: str = "", gender: str | None = None, *, sensitive: bool = False
    ) -> str | None:
        """Say ``number``; return the escape digit pressed, or None."""
        extra = () if gender is None else (gender,)
        return _digit(await self._media("SAY NUMBER", number, escape_digits, *extra, sensitive=sensitive))

    async def say_alpha(self, text: str, escape_digits: str = "", *, sensitive: bool = False) -> str | None:
        """Spell ``text``; return the escape digit pressed, or None."""
        return _digit(await self._media("SAY ALPHA", text, escape_digits, sensitive=sensitive))

    async def record_file(
        self,
        filename: str,
        fmt: str = "wav",
        escape_digits: str = "#",
        timeout_ms: int = -1,
        *,
        offset: int | None = None,
        beep: bool = True,
        silence_s: int | None = None,
    ) -> AGIReply:
        """Record to ``filename.fmt`` until a digit, ``timeout_ms`` or ``silence_s`` of silence.

        Returns the reply: ``data`` is ``dtmf``/``timeout``, ``result`` the
        digit's ASCII code for ``dtmf``, ``endpos`` the length in samples.
        """
        args: list[str | int] = [filename, fmt, escape_digits, timeout_ms]
        args += [] if offset is None else [offset]
        args += ["BEEP"] if beep else []
        args += [] if silence_s is None else [f"s={silence_s}"]
        timeout = None if timeout_ms >= 0 else math.inf
        return await self._media("RECORD FILE", *args, extra=max(timeout_ms, 0) / 1000, timeout=timeout)

    async def execute(self, application: str, *args: str | int, timeout: float | None = None) -> str:
        """Run a dialplan application (``EXEC``) with ``args`` joined by commas; return its result.

        Raises :class:`AGICommandError` (code -2) if the application does not
        exist.  Applications that run long (Dial, Queue, MusicOnHold) need a
        ``timeout`` above the default command timeout.
        """
        options = (",".join(str(arg) for arg in args),) if args else ()
        reply = await self._media("EXEC", application, *options, timeout=timeout)
        if reply.result_int == -2:
            raise AGICommandError(-2, f"application not found: {application}", "EXEC")
        return reply.result

    async def set_variable(self, name: str, value: str | int, *, sensitive: bool = False) -> None:
        """Set a channel variable."""
        self.last_reply = await self._send("SET VARIABLE", name, value, sensitive=sensitive)

    async def get_variable(self, name: str, *, sensitive: bool = False) -> str | None:
        """A channel variable or function (``CALLERID(num)``); None if unset."""
        reply = self.last_reply = await self._send("GET VARIABLE", name, sensitive=sensitive)
        return None if reply.result == "0" else (reply.data or "")

    async def get_full_variable(self, expression: str, channel: str | None = None) -> str | None:
        """Expand ``expression`` (``${VAR}``…) on this or another channel; None if unset/no channel."""
        extra = () if channel is None else (channel,)
        reply = self.last_reply = await self._send("GET FULL VARIABLE", expression, *extra)
        return None if reply.result == "0" else (reply.data or "")

    async def verbose(self, message: str, level: int = 1) -> None:
        """Write ``message`` to the Asterisk console at verbosity ``level`` (1–4)."""
        self.last_reply = await self._send("VERBOSE", message, level)

    async def noop(self, text: str | None = None) -> None:
        """Do nothing (a round trip; ``text`` shows up in Asterisk's AGI debug)."""
        self.last_reply = await self._send("NOOP", *(() if text is None else (text,)))

    async def hangup(self, channel: str | None = None) -> None:
        """Hang up this channel (a no-op if the caller already hung up) or the named one."""
        if channel is None and self.hung_up:
            return
        reply = self.last_reply = await self._send("HANGUP", *(() if channel is None else (channel,)))
        if reply.result_int == -1:
            raise AGICommandError(-1, f"no such channel: {channel}", "HANGUP")

    async def set_music(self, on: bool, moh_class: str | None = None) -> None:
        """Start (``on=True``) or stop music on hold, optionally of class ``moh_class``."""
        extra = () if moh_class is None else (moh_class,)
        self.last_reply = await self._send("SET MUSIC", "on" if on else "off", *extra)
