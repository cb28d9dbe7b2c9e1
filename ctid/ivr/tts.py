"""Text to speech with Debian's espeak-ng: dynamic text (a product's introduction, a policy) as a sound file.

:class:`EspeakSpeech` implements :class:`~ctid.ivr.prompts.ITextToSpeech`.
A text is rendered once per voice: ``espeak-ng`` writes a WAV file (22 kHz),
``sox`` turns it into the switch's 8 kHz mono 16-bit WAV, and the result is
renamed into ``directory`` as ``<hash>.wav``, the hash being of the voice and
the text.  The Deferred fires with ``<directory>/<hash>``, the name STREAM
FILE and Playback take (no extension).  Later calls for the same text find
the file (in memory, or on disk from an earlier run) and spawn nothing;
callers asking while a text is being rendered wait for that one render.

Both programs run as child processes (``reactor.spawnProcess``), never on the
reactor thread, at most ``concurrency`` renders at a time; each process is
killed after ``timeout`` seconds.  The text goes to espeak-ng's stdin, not its
command line.  Logs name the file and the voice, never the text, and a text
holding a long run of digits (an account or card number; masked numbers such
as ``**** 1234`` are fine) is refused: amounts and numbers are spoken by
prompt concatenation (:mod:`ctid.ivr.say`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.ivr.prompts import ITextToSpeech

log = Logger()

#: The espeak-ng voice of each language the IVR speaks.
VOICES = {"zh": "cmn", "en": "en"}
#: The programs a render needs (Debian packages espeak-ng and sox).
PROGRAMS = ("espeak-ng", "sox")
#: The switch's sound format: 8 kHz, mono, 16-bit signed PCM in a WAV file.
SAMPLE_RATE = 8000
#: Longest text rendered (characters); a longer one is refused rather than keeping a process busy.
MAX_TEXT = 2000
_STDERR_KEPT = 400
_NUMBER_LIKE = re.compile(r"\d(?:[\s-]?\d){7,}")


class SpeechError(Exception):
    """A text was not rendered: refused, timed out or the synthesiser failed.  The message never holds the text."""


def missing_programs() -> list[str]:
    """The programs of :data:`PROGRAMS` not found on PATH."""
    return [name for name in PROGRAMS if shutil.which(name) is None]


def sound_name(voice: str, text: str) -> str:
    """The file name (no extension) a text is cached under: a hash of the voice and the text."""
    return hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:32]


def check_text(text: str) -> None:
    """Raise :class:`SpeechError` for a text that must not be rendered: empty, too long, or holding a number."""
    if not text.strip():
        raise SpeechError("nothing to say: the text is empty")
    if len(text) > MAX_TEXT:
        raise SpeechError(f"text of {len(text)} characters refused (at most {MAX_TEXT})")
    if _NUMBER_LIKE.search(text):
        raise SpeechError("text refused: it holds a run of 8 or more digits (an account or card number?); "
                          "mask it, or say numbers by prompt concatenation")


class _Run(ProcessProtocol):
    """One child process: feeds ``stdin`` and closes it, keeps the tail of stderr, fires ``ended`` with the reason."""

    def __init__(self, stdin: bytes):
        self.stdin = stdin
        self.stderr = b""
        #: Why the process was killed (None: it was not).
        self.killed: str | None = None
        self.ended: Deferred[Any] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.stdin)
        self.transport.closeStdin()

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-_STDERR_KEPT:]

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)

    def kill(self, why: str) -> None:
        """Kill the process (``why``: what the caller is told)."""
        self.killed = why
        assert self.transport is not None
        try:
            self.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass


@implementer(ITextToSpeech)
class EspeakSpeech(Service):
    """Renders text with espeak-ng + sox into ``directory`` (which the switch reads), cached by voice and text.

    A named service (``tts``): stopping it kills the renders still running.
    ``reactor`` provides process spawning and time.
    """

    name = "tts"

    def __init__(self, reactor: Any, directory: str, timeout: float = 10.0, concurrency: int = 2, *,
                 espeak: str = "espeak-ng", sox: str = "sox"):
        found = {name: shutil.which(name) or "" for name in (espeak, sox)}
        missing = [name for name, path in found.items() if not path]
        if missing:
            raise SpeechError(f"{', '.join(missing)} not found (Debian: apt-get install espeak-ng sox)")
        self.espeak, self.sox = found[espeak], found[sox]
        self.directory = os.path.abspath(directory)
        self.timeout = timeout
        self.reactor = reactor
        #: Child processes started so far (two per render).
        self.spawned = 0
        self._slots = DeferredSemaphore(concurrency)
        self._ready: set[str] = set()
        self._waiting: dict[str, list[Deferred[str]]] = {}
        self._running: set[_Run] = set()
        self._env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}

    @property
    def languages(self) -> frozenset[str]:
        """The languages this engine speaks."""
        return frozenset(VOICES)

    @property
    def processes(self) -> int:
        """Child processes running now."""
        return len(self._running)

    def synthesize(self, text: str, language: str) -> Deferred[str]:
        """See :meth:`ITextToSpeech.synthesize`; fails with :class:`SpeechError`."""
        voice = VOICES.get(language)
        if voice is None:
            return fail(SpeechError(f"no voice for language {language!r} (known: {', '.join(VOICES)})"))
        try:
            check_text(text)
        except SpeechError as error:
            return fail(error)
        name = sound_name(voice, text)
        path = os.path.join(self.directory, name)
        if name in self._ready:
            return succeed(path)
        waiter: Deferred[str] = Deferred()
        waiters = self._waiting.setdefault(name, [])
        waiters.append(waiter)
        if len(waiters) == 1:
            Deferred.fromCoroutine(self._render(name, voice, text)).addBoth(self._rendered, name, path)
        return waiter

    def _rendered(self, result: Failure | None, name: str, path: str) -> None:
        outcome: str | SpeechError
        if isinstance(result, Failure):
            log.warn("TTS: rendering {name} failed: {error}", name=name, error=str(result.value))
            outcome = result.value if isinstance(result.value, SpeechError) else SpeechError(str(result.value))
        else:
            self._ready.add(name)
            outcome = path
        for waiter in self._waiting.pop(name, ()):
            if waiter.called:  # the caller gave up (timed out or cancelled)
                continue
            if isinstance(outcome, SpeechError):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    async def _render(self, name: str, voice: str, text: str) -> None:
        await self._slots.acquire()
        try:
            final = os.path.join(self.directory, name + ".wav")
            if os.path.exists(final):  # rendered by an earlier run
                return
            os.makedirs(self.directory, exist_ok=True)
            raw = os.path.join(self.directory, f".{name}.raw.wav")
            part = os.path.join(self.directory, f".{name}.part.wav")
            try:
                await self._run([self.espeak, "--stdin", "-b", "1", "-v", voice, "-w", raw], text.encode("utf-8"))
                await self._run([self.sox, "-G", raw, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                                 "-e", "signed-integer", part])
                os.replace(part, final)
            finally:
                for leftover in (raw, part):
                    if os.path.exists(leftover):
                        os.remove(leftover)
            log.info("TTS: rendered {name} ({voice}, {characters} characters)", name=name, voice=voice,
                     characters=len(text))
        finally:
            self._slots.release()

    async def _run(self, argv: list[str], stdin: bytes = b"") -> None:
        program = os.path.basename(argv[0])
        run = _Run(stdin)
        try:
            self.reactor.spawnProcess(run, argv[0], argv, env=self._env, path=self.directory)
        except OSError as e:
            raise SpeechError(f"cannot start {program}: {e.strerror}") from None
        self.spawned += 1
        self._running.add(run)
        timer = self.reactor.callLater(self.timeout, run.kill, f"took longer than {self.timeout:g} s and was killed")
        try:
            reason = await run.ended
        finally:
            self._running.discard(run)
            if timer.active():
                timer.cancel()
        if run.killed:
            raise SpeechError(f"{program} {run.killed}")
        if not isinstance(reason, ProcessDone):
            how = f"exit {reason.exitCode}" if reason.exitCode is not None else f"signal {reason.signal}"
            detail = " ".join(run.stderr.decode("utf-8", "replace").split())
            raise SpeechError(f"{program} failed ({how}){': ' + detail if detail else ''}")

    def stopService(self) -> None:
        """Kill the renders still running (their callers get :class:`SpeechError`)."""
        super().stopService()
        for run in list(self._running):
            run.kill("was killed: the service stopped")
