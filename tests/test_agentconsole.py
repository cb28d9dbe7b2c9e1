"""ctid-agent, the terminal agent desktop: line parsing and event formatting (pure), and the console end to end."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.testing import StringTransport

from ctid.agentcli import ConsoleIO, PasswordError, parse_args, read_password
from ctid.agentconsole import AgentConsole, Credentials
from ctid.client import CTIEvent
from ctid.consolecommands import COMMANDS, Parsed, UsageError, help_lines, parse_command
from ctid.consoleformat import format_agent, format_event, format_login, format_result
from tests.e2e import PASSWORD

AT = datetime(2026, 1, 1, 12, 3, 4, tzinfo=UTC).timestamp()

# --- parsing


@pytest.mark.parametrize("line, cmd, args", [
    ("ready", "SetAgentState", {"state": "ready"}),
    ("pause", "SetAgentState", {"state": "not_ready"}),
    ("pause lunch", "SetAgentState", {"state": "not_ready", "reason": "lunch"}),
    ("  PAUSE   lunch  ", "SetAgentState", {"state": "not_ready", "reason": "lunch"}),
    ("pause-after", "SetAgentState", {"state": "not_ready", "after_call": True}),
    ("pause-after break", "SetAgentState", {"state": "not_ready", "reason": "break", "after_call": True}),
    ("logout", "Logout", {}),
    ("logout-after", "Logout", {"after_call": True}),
    ("state", "SnapshotAgent", {}),
    ("raw SnapshotAgent {}", "SnapshotAgent", {}),
    ("raw Heartbeat", "Heartbeat", {}),
    ('raw MakeCall {"to": "1002", "extra": [1, null]}', "MakeCall", {"to": "1002", "extra": [1, None]}),
    ("login", None, {}),
    ("help", None, {}),
    ("quit", None, {}),
])
def test_every_command_parses_to_its_cti_request(line, cmd, args):
    """Each console command becomes its CTI command and arguments; login/help/quit are the console's own."""
    parsed = parse_command(line)
    assert (parsed.cmd, parsed.args) == (cmd, args)
    assert parsed.name == line.split()[0].lower()


def test_the_table_covers_what_help_lists():
    """help lists every command of the table with its syntax, so a new table line is documented at once."""
    text = "\n".join(help_lines())
    for name, command in COMMANDS.items():
        assert f"{name} {command.syntax}".rstrip() in text and command.help in text


def test_blank_lines_are_ignored():
    """An empty or blank line is no command."""
    assert parse_command("") is None and parse_command("   \t") is None


@pytest.mark.parametrize("line, message", [
    ("dance", "unknown command 'dance'; type help for the list"),
    ("ready now", "usage: ready — it takes no arguments"),
    ("logout please", "usage: logout — it takes no arguments"),
    ("quit now", "usage: quit — it takes no arguments"),
    ("raw", "usage: raw <Command> [json-object] — give a CTI command name such as SnapshotAgent"),
    ("raw snapshotAgent {}", "usage: raw <Command> [json-object] — give a CTI command name such as SnapshotAgent"),
    ("raw Bye", "usage: raw <Command> [json-object] — Bye belongs to the client library; use quit to leave"),
    ("raw Hello {}", "usage: raw <Command> [json-object] — Hello belongs to the client library; use quit to leave"),
    ("raw MakeCall [1]", "usage: raw <Command> [json-object] — the arguments must be a JSON object"),
    ("raw MakeCall {to: 1}", "usage: raw <Command> [json-object] — the arguments are not JSON"),
    ('raw MakeCall {"n": NaN}', "usage: raw <Command> [json-object] — the arguments are not JSON: NaN is not JSON"),
])
def test_bad_input_gives_a_usage_message(line, message):
    """A wrong line raises UsageError saying what is wrong and how to type the command."""
    with pytest.raises(UsageError) as caught:
        parse_command(line)
    assert str(caught.value).startswith(message)


# --- formatting


def event(name, data, seq=5):
    """An event at 12:03:04 UTC."""
    return CTIEvent(name, seq, AT, data)


def test_agent_state_changed_reads_as_one_line():
    """AgentStateChanged shows time, seq, state, the previous state and the trigger."""
    data = {"agent": "1001", "state": "ready", "reason": None, "previous": "not_ready", "trigger": "ready",
            "forced_by": None, "pending": None, "available": True}
    assert format_event(event("AgentStateChanged", data), UTC) == (
        "12:03:04 #5 AgentStateChanged ready (was not_ready, trigger ready)")


def test_agent_state_changed_shows_reason_supervisor_and_pending_change():
    """A pause shows its reason; a forced change who forced it; a pending pause or logout what comes next."""
    paused = {"state": "not_ready", "reason": "lunch", "previous": "ready", "trigger": "pause", "forced_by": None}
    assert format_event(event("AgentStateChanged", paused, 6), UTC) == (
        "12:03:04 #6 AgentStateChanged not_ready lunch (was ready, trigger pause)")
    forced = {"state": "logged_out", "previous": "ready", "trigger": "force_logout", "forced_by": "1900"}
    assert format_event(event("AgentStateChanged", forced, 7), UTC).endswith(
        "logged_out (was ready, trigger force_logout, by 1900)")
    talking = {"state": "talking", "previous": "ringing", "trigger": "answer", "call": "c-1",
               "pending": {"state": "pause", "reason": "break"}}
    assert format_event(event("AgentStateChanged", talking), UTC).endswith(
        "talking (was ringing, trigger answer); then pause break")


def test_delivered_screen_pop_reads_as_one_line():
    """Delivered shows the caller, the number dialled, the queue, the wait and the IVR data."""
    data = {"call": "1795.1", "ani": "13800138000", "dnis": "95566", "queue": "general", "waited": 4.2,
            "priority": 0, "data": {"CTID_MENU": "balance"}}
    assert format_event(event("Delivered", data), UTC) == (
        "12:03:04 #5 Delivered call 1795.1 from 13800138000 to 95566 via general after 4.2s CTID_MENU=balance")


def test_phone_warning_says_what_it_means():
    """AgentPhoneWarning says whether the phone is off hook (no calls) or hung up again."""
    assert format_event(event("AgentPhoneWarning", {"not_hung_up": True}), UTC) == (
        "12:03:04 #5 AgentPhoneWarning phone off hook with no call: no calls are offered until it is hung up")
    assert format_event(event("AgentPhoneWarning", {"not_hung_up": False}), UTC).endswith("phone hung up: "
                                                                                         "calls can be offered again")


def test_unknown_events_show_name_and_compact_json():
    """An event the console does not know prints generically: its name and compact JSON, Unicode kept."""
    data = {"call": "c-91", "from": "13800138000", "name": "王芳", "queue": None}
    assert format_event(event("CallDelivered", data, 12), UTC) == (
        '12:03:04 #12 CallDelivered {"call":"c-91","from":"13800138000","name":"王芳","queue":null}')


def test_a_malformed_known_event_falls_back_to_json():
    """A known event whose data is not what the formatter expects is still shown, as JSON."""
    assert format_event(event("AgentStateChanged", {"pending": {"state": "x", "reason": 1}, "state": []}), UTC)
    line = format_event(CTIEvent("AgentStateChanged", 1, float("nan"), {"state": "ready"}), UTC)
    assert line.startswith("--:--:-- #1 AgentStateChanged ready")


def test_snapshot_and_result_lines():
    """The login snapshot shows the agent, roles and skills; results show the agent, raw results JSON."""
    agent = {"agent": "1001", "name": "Li Na", "station": "PJSIP/1001", "state": "not_ready", "reason": None,
             "since": AT, "call": None, "pending": None, "skills": {"accounts": 7, "consultation": 5}}
    assert format_login({"agent": agent, "calls": [], "roles": ["agent"]}, UTC) == (
        "agent 1001 (Li Na) on PJSIP/1001: not_ready since 12:03:04; roles agent; skills accounts=7, consultation=5")
    busy = dict(agent, state="talking", call="c-7", pending={"state": "logout", "reason": None})
    assert format_agent(busy, UTC) == "agent 1001 (Li Na) on PJSIP/1001: talking since 12:03:04, call c-7; then logout"
    assert format_result(Parsed("state", "SnapshotAgent", {}), {"agent": agent}, UTC).startswith("ok: agent 1001")
    assert format_result(Parsed("raw", "Heartbeat", {}), {"at": 1.5}, UTC) == 'ok: {"at":1.5}'


# --- the command line and the password


def test_password_comes_from_file_then_environment_then_prompt(tmp_path):
    """--password-file wins (first line), then $CTID_AGENT_PASSWORD, then the prompt; never an empty one."""
    secret = tmp_path / "pw"
    secret.write_text("s3cret\nignored\n")
    never = lambda prompt: pytest.fail("prompted")  # noqa: E731
    assert read_password(str(secret), {"CTID_AGENT_PASSWORD": "env"}, never, "1001") == "s3cret"
    assert read_password(None, {"CTID_AGENT_PASSWORD": "env"}, never, "1001") == "env"
    prompts = []
    assert read_password(None, {}, lambda text: prompts.append(text) or "typed", "1001") == "typed"
    assert prompts == ["password for agent 1001: "]
    with pytest.raises(PasswordError, match="empty"):
        read_password(None, {}, lambda text: "", "1001")
    with pytest.raises(PasswordError, match="cannot read the password file"):
        read_password(str(tmp_path / "missing"), {}, never, "1001")


def test_credentials_keep_the_password_out_of_repr():
    """repr of the credentials (logs, tracebacks) never holds the password."""
    assert "hunter2" not in repr(Credentials("1001", "1001", "hunter2"))


def test_command_line():
    """--agent and --station are required; the server defaults to the local daemon."""
    options = parse_args(["--agent", "1001", "--station", "1001"])
    assert (options.server, options.agent, options.station, options.password_file) == (
        "tcp:127.0.0.1:7070", "1001", "1001", None)
    with pytest.raises(SystemExit):
        parse_args(["--agent", "1001"])


# --- end to end, against the whole daemon


def console(daemon, lines, agent="1001", password=PASSWORD):
    """A console for ``agent`` on its own station against the daemon, writing into ``lines``."""
    return AgentConsole(reactor, f"tcp:127.0.0.1:{daemon.port('cti')}", Credentials(agent, agent, password),
                        lines.append, retry_policy=lambda attempt: 0.05, request_timeout=3.0)


def shown(lines, text):
    """The lines containing ``text``."""
    return [line for line in lines if text in line]


@pytest_twisted.ensureDeferred
async def test_an_agent_works_a_shift_at_the_console(daemon):
    """Sign in, ready, pause, snapshots, a raw command, bad commands, sign out, quit — each shows in the output."""
    lines = []
    agent = console(daemon, lines)
    assert await agent.start()
    assert lines[0].startswith("connecting to tcp:127.0.0.1:")
    assert re.fullmatch(r"signed in: agent 1001 \(Agent 1001\) on PJSIP/1001: not_ready since \d\d:\d\d:\d\d; "
                        r"roles agent; skills accounts=5", lines[1])
    assert lines[2].startswith("connected to ctid/") and lines[2].endswith("type help for the commands")

    script = ["ready", "pause lunch", "state", "raw SnapshotAgent {}", "dance", "ready now", "pause-after now please",
              'raw SetAgentState {"state": "dancing"}', "raw NoSuchThing {}", "logout", "state", "login", "help",
              "quit"]
    for line in script:
        await agent.line_received(line)
    assert await agent.finished() == 0

    output = "\n".join(lines[3:])
    assert shown(lines, "#1 AgentStateChanged ready (was not_ready, trigger ready)")
    assert shown(lines, "#2 AgentStateChanged not_ready lunch (was ready, trigger pause)")
    assert shown(lines, "ok: agent 1001 (Agent 1001) on PJSIP/1001: ready since ")
    assert len(shown(lines, "ok: agent 1001 (Agent 1001) on PJSIP/1001: not_ready lunch since ")) == 2
    assert shown(lines, 'ok: {"agent":{"agent":"1001","name":"Agent 1001","station":"PJSIP/1001",'
                        '"state":"not_ready","reason":"lunch"')
    assert "unknown command 'dance'; type help for the list" in lines
    assert shown(lines, "error bad_request: state must be one of ready, not_ready")
    assert shown(lines, "error unknown_command: ")
    assert shown(lines, "#3 AgentStateChanged logged_out (was not_ready, trigger logout)")
    assert shown(lines, "error login_required: ")
    assert "usage: ready — it takes no arguments" in lines
    assert len(shown(lines, "signed in: agent 1001 (Agent 1001) on PJSIP/1001: not_ready")) == 2  # login again
    assert "commands:" in lines and lines[-1] == "bye"
    assert shown(lines, "error not_on_call: ")  # pause-after (reason "now please") needs a call
    assert PASSWORD not in output


@pytest_twisted.ensureDeferred
async def test_a_dropped_link_resumes_and_a_forced_end_stops_the_console(daemon):
    """After a drop the console says reconnecting…, resumes without signing in again; session_ended exits it."""
    lines = []
    agent = console(daemon, lines)
    await agent.start()
    cti = daemon.root.getServiceNamed("cti").cti
    for protocol in list(cti.connections):
        protocol.transport.abortConnection()
    await daemon.until(lambda: shown(lines, "reconnected: session resumed"), "the resume")
    assert shown(lines, "connection lost; reconnecting…")
    await agent.line_received("ready")
    assert shown(lines, "#1 AgentStateChanged ready (was not_ready, trigger ready)")
    assert len(shown(lines, "signed in:")) == 1

    [session] = cti.handler.sessions["1001"]
    session.end("forced_logout", "signed out by a supervisor")
    assert await agent.finished() == 1
    assert lines[-1] == ("session ended by the server (forced_logout): signed out by a supervisor; "
                         "exiting (start ctid-agent again to sign in)")
    await agent.line_received("ready")  # typed too late: ignored, nothing breaks
    await daemon.until(lambda: not agent.client.connected, "the connection to close")
    assert lines[-1].startswith("session ended by the server") and agent.client.ended.code == "session_ended"


@pytest_twisted.ensureDeferred
async def test_a_refused_sign_in_and_a_server_shutdown_end_the_console(daemon):
    """A wrong password ends the console with its error code; so does the server shutting down, with a notice."""
    lines = []
    wrong = console(daemon, lines, password="nope")
    assert not await wrong.start()
    assert await wrong.finished() == 1 and lines[-1].startswith("error bad_credentials: ")

    lines = []
    agent = console(daemon, lines, agent="1002")
    await agent.start()
    await daemon.root.getServiceNamed("cti").cti.shutdown()
    assert await agent.finished() == 1
    assert shown(lines, "the server is shutting down: ") and lines[-1].endswith("exiting (try again later)")
    assert not shown(lines, "reconnecting")


class RecordingConsole:
    """Stands in for AgentConsole behind ConsoleIO."""

    def __init__(self):
        self.lines = []

    def line_received(self, line):
        self.lines.append(line)

    def end_of_input(self):
        self.lines.append("<eof>")


def test_stdio_side_frames_lines_and_quits_at_end_of_input():
    """stdin lines (LF or CRLF, UTF-8) reach the console in order; end of input quits; output is UTF-8 lines."""
    io, recording = ConsoleIO("utf-8"), RecordingConsole()
    io.console = recording
    transport = StringTransport()
    io.makeConnection(transport)
    io.dataReceived("ready\r\npause 午饭\nsta".encode())
    io.dataReceived(b"te\n" + b"x" * (ConsoleIO.MAX_LENGTH + 1) + b"\n")
    io.readConnectionLost()
    assert recording.lines == ["ready", "pause 午饭", "state", "<eof>"]
    io.write_line("ok: 王芳")
    assert transport.value().decode() == f"error: a line over {ConsoleIO.MAX_LENGTH} bytes was ignored\nok: 王芳\n"
