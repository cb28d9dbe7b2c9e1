"""Text to speech with espeak-ng: real renders to 8 kHz WAV files, the cache, the timeout, the concurrency bound,
the flow checks that know whether TTS is configured, and a product introduction spoken through TTS end to end.

The rendering tests run the real ``espeak-ng`` and ``sox`` (Debian packages;
``make test`` installs them as root).  Without them those tests skip, or fail
under ``CTID_REQUIRE_TTS=1`` (CI).  Stand-in programs (small shell scripts
wrapping or replacing espeak-ng) count spawns, hold a process past its
timeout, or fail.
"""

import os
import pathlib
import shutil
import wave

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from ctid import config
from ctid.adapters.corebank.guard import GuardedBank
from ctid.adapters.corebank.sandbox import SandboxBank
from ctid.adapters.corebank.sandbox_data import PRODUCTS, seed_bank
from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.pool import DatabasePool
from ctid.banking import Product
from ctid.ivr.call import IVRHooks
from ctid.ivr.engine import IVREngine
from ctid.ivr.loader import load_library
from ctid.ivr.model import FlowError
from ctid.ivr.prompts import ITextToSpeech
from ctid.ivr.tts import EspeakSpeech, SpeechError, check_text, missing_programs, sound_name
from tests.e2e import Daemon, daemon_config
from tests.test_ivr_engine import ScriptedSession

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFEST = str(ROOT / "conf" / "prompts" / "manifest.yaml")
ZH = "借记卡可在全国网点和自助设备存取款，支持网上支付和代缴费。"
EN = "Our debit card works at every branch and cash machine in the country."


def require_tts() -> None:
    """Skip (or under ``CTID_REQUIRE_TTS=1`` fail) the test when espeak-ng or sox is not installed."""
    missing = missing_programs()
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt-get install espeak-ng sox; make test does it as root)"
    if os.environ.get("CTID_REQUIRE_TTS") == "1":
        pytest.fail(f"CTID_REQUIRE_TTS=1 but {reason}")
    pytest.skip(reason + "; set CTID_REQUIRE_TTS=1 to fail instead")


def stand_in(tmp_path, name, body):
    """An executable shell script ``name`` in ``tmp_path`` (a stand-in for espeak-ng)."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def wav_facts(path):
    """(channels, sample rate, sample width, seconds) of a WAV file."""
    with wave.open(path, "rb") as w:
        return w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes() / w.getframerate()


# --- what may be said -------------------------------------------------------------------------------------------


def test_texts_holding_numbers_are_refused_masked_ones_spoken():
    """Account and card numbers (8+ digits, spaced or not) never reach the synthesiser; masked ones and short
    figures do; empty and overlong texts are refused too, and the error never repeats the text."""
    for text in ("您的卡号6222020018881234", "card 6222 0200 1888 1234", "账号 1234-5678", "", "  ", "字" * 2001):
        with pytest.raises(SpeechError) as caught:
            check_text(text)
        assert "1234" not in str(caught.value)
    for text in ("尾号 **** **** **** 1234 的账户", "起购金额10000元", ZH, EN):
        check_text(text)


def test_sound_names_hash_voice_and_text():
    """The cached file's name is stable for a voice and a text, and differs when either differs."""
    assert sound_name("cmn", ZH) == sound_name("cmn", ZH)
    assert len({sound_name("cmn", ZH), sound_name("en", ZH), sound_name("cmn", ZH + "。")}) == 3
    assert sound_name("cmn", ZH).isalnum()


# --- the flow checks know whether TTS is configured ----------------------------------------------------------------


def flow_folder(tmp_path, item, languages="[zh, en]"):
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    (folder / "t.yaml").write_text(
        f"flow: t\nlanguages: {languages}\nstart: info\nnodes:\n"
        "  info: {type: menu, prompt: info-menu, choices: {'1': intro}, on_fail: bye}\n"
        f"  intro:\n    type: say\n    items:\n      - {item}\n    next: info\n"
        "  bye: {type: hangup}\n")
    return str(folder)


def test_text_without_a_recorded_fallback_needs_tts_for_every_call(tmp_path):
    """Without TTS a text item must have a fallback; with TTS speaking all the flow's languages it need not; a
    text said only in Chinese needs one for English calls."""
    bare = flow_folder(tmp_path, "{text: note}")
    with pytest.raises(FlowError, match=r"node intro: items: #1: text needs a recorded fallback .*tts is none"):
        load_library(bare, MANIFEST)
    assert load_library(bare, MANIFEST, frozenset({"zh", "en"})).flows["t"]
    with pytest.raises(FlowError, match="will not say it in en"):
        load_library(bare, MANIFEST, frozenset({"zh"}))
    chinese = flow_folder(tmp_path, "{text: note, language: zh}")
    with pytest.raises(FlowError, match="will not say it in en"):
        load_library(chinese, MANIFEST, frozenset({"zh", "en"}))
    assert load_library(flow_folder(tmp_path, "{text: note, language: zh}", "[zh]"), MANIFEST, frozenset({"zh"}))
    for fallback in ("{text: note, fallback: no-information}",
                     "{text: note, language: zh, fallback_key: code, prefix: product-}"):
        assert load_library(flow_folder(tmp_path, fallback), MANIFEST).flows["t"]


def test_text_item_options_are_checked(tmp_path):
    """A text item's language must be the flow's, prefix goes with fallback_key, the fallback must be recorded."""
    for item, problem in (("{text: note, language: fr, fallback: no-information}", "'fr' is not one of the flow"),
                          ("{text: note, prefix: product-, fallback: no-information}", "only with fallback_key"),
                          ("{text: note, fallback_key: code}", "prefix: expected a name"),
                          ("{text: note, fallback: no-such-prompt}", "'no-such-prompt' is missing"),
                          ("{text: note, fallback: no-information, voice: cmn}", "unknown key 'voice'")):
        with pytest.raises(FlowError, match=problem):
            load_library(flow_folder(tmp_path, item), MANIFEST)


def test_config_tts_keys(tmp_path, monkeypatch):
    """[ivr] tts is none or espeak; espeak is refused with a clear line when espeak-ng or sox is missing."""
    base = (f"[ami]\nsecret = s\n[ivr]\nflows = {ROOT / 'conf' / 'ivr'}\nprompts = {MANIFEST}\n"
            f"tts_directory = {tmp_path / 'tts'}\ntts_timeout = 4\n")
    path = tmp_path / "ctid.ini"
    path.write_text(base + "tts = festival\n")
    with pytest.raises(config.ConfigError, match=r"\[ivr\] tts: expected none or espeak"):
        config.load(str(path))
    path.write_text(base + "tts = none\n")
    loaded = config.load(str(path)).ivr
    assert (loaded.tts, loaded.tts_timeout, loaded.tts_directory) == ("none", 4.0, str(tmp_path / "tts"))
    monkeypatch.setenv("PATH", str(tmp_path))
    path.write_text(base + "tts = espeak\n")
    with pytest.raises(config.ConfigError, match=r"\[ivr\] tts: espeak needs espeak-ng and sox"):
        config.load(str(path))


# --- rendering ----------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_chinese_and_english_rendered_to_8khz_wav_without_logging_the_text(tmp_path):
    """zh (voice cmn) and en render to 8 kHz mono 16-bit WAV files of speech length, named <dir>/<hash>; no log
    event holds the text."""
    require_tts()
    tts = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=30)
    assert ITextToSpeech.providedBy(tts) and tts.languages == {"zh", "en"}
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        zh, en = await gatherResults([tts.synthesize(ZH, "zh"), tts.synthesize(EN, "en")])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert zh == str(tmp_path / "tts" / sound_name("cmn", ZH)) and en == str(tmp_path / "tts" / sound_name("en", EN))
    for name in (zh, en):
        channels, rate, width, seconds = wav_facts(name + ".wav")
        assert (channels, rate, width) == (1, 8000, 2) and seconds > 1.0
    assert sorted(os.listdir(tmp_path / "tts")) == sorted(os.path.basename(n) + ".wav" for n in (zh, en))
    assert events and not any(ZH in repr(e) or EN in repr(e) for e in events)


@pytest_twisted.ensureDeferred
async def test_cache_hit_spawns_nothing(tmp_path):
    """Asking twice at once renders once; asking again is answered at once; a new engine finds the file on disk."""
    require_tts()
    log = tmp_path / "spawns"
    espeak = stand_in(tmp_path, "espeak-counting", f'echo run >> "{log}"\nexec espeak-ng "$@"')
    tts = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=30, espeak=espeak)
    first, second = await gatherResults([tts.synthesize(ZH, "zh"), tts.synthesize(ZH, "zh")])
    assert first == second and tts.spawned == 2 and log.read_text().count("run") == 1  # espeak-ng, then sox
    again = tts.synthesize(ZH, "zh")
    assert again.called and again.result == first
    fresh = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=30, espeak=espeak)
    assert await fresh.synthesize(ZH, "zh") == first and fresh.spawned == 0
    assert log.read_text().count("run") == 1


@pytest_twisted.ensureDeferred
async def test_timeout_kills_the_process_and_fails_cleanly(tmp_path):
    """A synthesiser that hangs is killed after the timeout: the caller gets SpeechError, nothing is left behind,
    and the next text renders normally once the program works."""
    require_tts()
    pid_file = tmp_path / "pid"
    hang = stand_in(tmp_path, "espeak-hanging", f'echo $$ > "{pid_file}"\nexec sleep 60')
    tts = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=0.5, espeak=hang)
    with pytest.raises(SpeechError, match="took longer than 0.5 s and was killed"):
        await tts.synthesize(ZH, "zh")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert tts.processes == 0 and os.listdir(tmp_path / "tts") == []
    tts.espeak, tts.timeout = shutil.which("espeak-ng"), 30
    assert os.path.exists(await tts.synthesize(ZH, "zh") + ".wav")


@pytest_twisted.ensureDeferred
async def test_a_failing_synthesiser_or_unknown_language_is_a_clean_error(tmp_path):
    """A program that exits non-zero gives SpeechError with its exit code and stderr; no voice, no render."""
    require_tts()
    broken = stand_in(tmp_path, "espeak-broken", 'echo "voice data missing" >&2\nexit 3')
    tts = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=30, espeak=broken)
    with pytest.raises(SpeechError, match=r"espeak-broken failed \(exit 3\): voice data missing"):
        await tts.synthesize(ZH, "zh")
    with pytest.raises(SpeechError, match="no voice for language 'fr'"):
        await tts.synthesize("Bonjour", "fr")
    with pytest.raises(SpeechError, match="8 or more digits"):
        await tts.synthesize("卡号6222020018881234", "zh")
    assert tts.spawned == 1
    with pytest.raises(SpeechError, match="espeak-nothing not found"):
        EspeakSpeech(reactor, str(tmp_path / "tts"), espeak="espeak-nothing")


@pytest_twisted.ensureDeferred
async def test_concurrency_bound_holds(tmp_path):
    """With a bound of 2, five texts asked at once start two renders; the others wait; never more than 2 run."""
    require_tts()
    log = tmp_path / "runs"
    espeak = stand_in(tmp_path, "espeak-logging",
                      f'echo start >> "{log}"\nsleep 0.2\nespeak-ng "$@"\nstatus=$?\necho end >> "{log}"\n'
                      "exit $status")
    tts = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=30, concurrency=2, espeak=espeak)
    texts = [f"{EN} Product number {word}." for word in ("one", "two", "three", "four", "five")]
    rendering = [tts.synthesize(text, "en") for text in texts]
    assert tts.processes == 2
    names = await gatherResults(rendering)
    assert len(set(names)) == 5 and tts.processes == 0
    running = peak = 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak <= 2 and log.read_text().count("start") == 5


@pytest_twisted.ensureDeferred
async def test_stopping_the_service_kills_running_renders(tmp_path):
    """Stopping the tts service (daemon shutdown) kills what is still rendering; the caller gets SpeechError."""
    require_tts()
    tts = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=60,
                       espeak=stand_in(tmp_path, "espeak-slow", "exec sleep 60"))
    tts.startService()
    speaking = tts.synthesize(ZH, "zh")
    assert tts.processes == 1
    tts.stopService()
    with pytest.raises(SpeechError, match="killed"):
        await speaking


# --- the IVR speaks the bank's texts ---------------------------------------------------------------------------


class InfoBank:
    """Just the product introductions of the sandbox bank."""

    def products(self):
        return succeed(tuple(Product(code, name, summary) for code, name, summary in PRODUCTS))


def run_products(tts, keys):
    """Run the bank flow with ``keys`` (language, 5 information, 3 products) on a scripted session."""
    library = load_library(str(ROOT / "conf" / "ivr"), MANIFEST, tts.languages if tts else frozenset())
    engine = IVREngine(library, InfoBank(), Clock(), hooks=IVRHooks(on_flow_end=lambda end: None), tts=tts)
    session = ScriptedSession(keys)
    return engine.run("bank", session), session


@pytest_twisted.ensureDeferred
async def test_products_use_recorded_prompts_without_tts_and_in_english(tmp_path):
    """tts = none: the recorded product-<code> prompts; with TTS an English caller still hears the recordings
    (the bank's texts are Chinese); a failing synthesiser falls back to them too."""
    recorded = [f"product-{code}" for code, _, _ in PRODUCTS]
    running, session = run_products(None, ["1", "5", "3"])
    await running
    assert session.playbacks() == [[name] for name in recorded]
    assert all(c[2].startswith("ctid/zh/") for c in session.commands if c[0] == "EXEC")
    require_tts()
    tts = EspeakSpeech(reactor, str(tmp_path / "tts"), timeout=30)
    running, session = run_products(tts, ["2", "5", "3"])
    await running
    assert session.playbacks() == [[name] for name in recorded] and tts.spawned == 0
    broken = EspeakSpeech(reactor, str(tmp_path / "tts"), espeak=stand_in(tmp_path, "espeak-broken", "exit 1"))
    running, session = run_products(broken, ["1", "5", "3"])
    await running
    assert session.playbacks() == [[name] for name in recorded]


@pytest_twisted.async_yield_fixture
async def spoken_line(tmp_path):
    """The daemon with the bank's flows, [ivr] tts = espeak, and the seeded sandbox bank."""
    require_tts()
    daemon_config(tmp_path, ivr=True, patience="120 120", talk_time="60 60")
    path = tmp_path / "ctid.ini"
    path.write_text(path.read_text().replace("[ivr]\n", f"[ivr]\ntts = espeak\ntts_directory = {tmp_path / 'tts'}\n"
                                                         "tts_timeout = 30\n"))
    daemon = Daemon(config.load(str(path)))
    await daemon.start()
    pool = DatabasePool(make_engine(f"sqlite:///{tmp_path / 'bank.sqlite'}"), reactor, name="bank-db",
                        max_threads=2)
    pool.startService()
    key = "tts-e2e-sandbox-key-01234"
    sandbox = SandboxBank(pool, key, reactor)
    await sandbox.create_tables()
    await pool.run(seed_bank, key, 1, 3, None, 16)
    daemon.root.getServiceNamed("ivr").bank = GuardedBank(sandbox, reactor)
    yield daemon
    await pool.stopService()
    await daemon.stop()


@pytest_twisted.ensureDeferred
async def test_product_introductions_spoken_through_tts_end_to_end(spoken_line, tmp_path):
    """A caller keys 1 (中文), 5, 3 through the simulated switch: the AGI Playback streams the files espeak-ng
    rendered from the sandbox bank's product texts, each an 8 kHz WAV in the tts directory."""
    daemon = spoken_line
    tts = daemon.root.getServiceNamed("tts")
    switch = EventRecorder(daemon.world)
    trunk = daemon.call_in("13800138000", "95566", script="153", patience=120)
    directory = str(tmp_path / "tts")

    def playbacks():
        return [e.get("Command") for e in switch.of("AGIExecStart", Channel=trunk.name)
                if directory in (e.get("Command") or "")]

    commands = await daemon.until(lambda: len(playbacks()) == len(PRODUCTS) and playbacks(),
                                  "every product spoken through TTS", 90)
    files = [command.split('"')[3] for command in commands]
    assert sorted(files) == sorted(os.path.join(directory, sound_name("cmn", summary)) for _, _, summary in PRODUCTS)
    for name in files:
        assert wav_facts(name + ".wav")[:3] == (1, 8000, 2)
    assert tts.spawned == 2 * len(PRODUCTS)
    if not trunk.dead:
        daemon.world.remote_hangup(trunk, 16)
