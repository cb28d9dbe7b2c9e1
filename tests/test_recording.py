"""Recording end to end: MixMonitor, mute and Playback on the simulated switch, the index rows, rights and audit."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody

from ctid import config
from ctid.adapters.directory import SQLDirectory
from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.adapters.store.schema import audit_log, recordings
from ctid.calls import CallEnded
from ctid.client import CTIClient, CTIClientError
from ctid.recordingsettings import RECORDING_SCHEMA, RecordingSettings, file_name
from tests.e2e import PASSWORD, Daemon, daemon_config, free_port
from tests.test_records import rows, written

SWITCH_DIR = "/var/spool/asterisk/monitor/ctid"


async def recording_daemon(tmp_path, recording: str, ivr: bool = False, **sim):
    """The daemon with a ``[recording]`` section (files mapped onto ``tmp_path/recordings``), started and seeded."""
    daemon_config(tmp_path, ivr=ivr, **sim)
    path = tmp_path / "ctid.ini"
    path.write_text(path.read_text() + f"[recording]\nswitch_directory = {SWITCH_DIR}\n"
                    f"directory = {tmp_path / 'recordings'}\n{recording}\n")
    daemon = Daemon(config.load(str(path)))
    await daemon.start()
    await SQLDirectory(daemon.root.getServiceNamed("db")).add_agent("1950", "Admin", PASSWORD, roles=("admin",))
    return daemon


async def desktop(daemon, agent, ready=False, station=None):
    """A signed-in desktop for ``agent`` (on ``station``, default its own); returns (client, events)."""
    client = CTIClient(reactor, name="test-recording/1", retry_policy=lambda attempt: 0.05)
    await client.connect(f"tcp:127.0.0.1:{daemon.port('cti')}")
    events = []
    client.on_event(None, events.append)
    await client.call("Login", agent=agent, password=PASSWORD, station=station or agent)
    if ready:
        await client.call("SetAgentState", state="ready")
    return client, events


def agent_state(daemon, agent):
    return daemon.root.getServiceNamed("cti").cti.handler.board.get(agent).state.value


async def talking(daemon, agent, number="13800138000"):
    """A caller put through to ``agent`` (already ready); returns the caller's channel once they talk."""
    trunk = daemon.call_in(number, "95566", script="", patience=60)
    await daemon.until(lambda: agent_state(daemon, agent) == "talking", f"{agent} to talk")
    return trunk


async def refused(code, call):
    with pytest.raises(CTIClientError) as caught:
        await call
    assert caught.value.code == code, caught.value.message


def test_file_names_fill_the_template():
    """The template's fields are filled, unsafe characters replaced, the format appended."""
    settings = RecordingSettings(file_name="{date}/{agent}/{call}-{time}", switch_directory="/rec")
    assert file_name(settings, 1795343254.0, call="1795343254.7", agent="10/02") == \
        "/rec/20261122/10_02/1795343254.7-102734.wav"


@pytest.mark.parametrize("key,value", [("file_name", "../{call}"), ("file_name", "{nope}"), ("file_name", "plain"),
                                       ("switch_directory", "relative"), ("token_lifetime", "0"),
                                       ("download_url", "ftp://x"), ("record", "sometimes")])
def test_bad_settings_are_refused(key, value):
    """Templates escaping the folder or naming unknown fields, relative switch paths, bad values: refused."""
    with pytest.raises(ValueError):
        RECORDING_SCHEMA[key](value)


@pytest_twisted.ensureDeferred
async def test_agent_starts_pauses_resumes_and_stops_recording(tmp_path):
    """Start → MixMonitor on the caller's leg; pause/resume → MixMonitorMute 1/0; stop; the index row; audited."""
    daemon = await recording_daemon(tmp_path, "record = none", talk_time="60 60")
    try:
        switch = EventRecorder(daemon.world)
        client, events = await desktop(daemon, "1002", ready=True)
        trunk = await talking(daemon, "1002")
        started = await client.call("StartRecording")
        assert started["state"] == "recording" and started["file"].startswith(f"{SWITCH_DIR}/")
        assert started["call"] == trunk.linkedid and started["file"].endswith(".wav")
        (start,) = switch.of("MixMonitorStart")
        assert start.get("Channel") == trunk.name
        await refused("already_recording", client.call("StartRecording"))
        assert (await client.call("PauseRecording"))["paused"] is True
        await refused("already_paused", client.call("PauseRecording"))
        assert (await client.call("ResumeRecording"))["state"] == "recording"
        mutes = [(e.get("Channel"), e.get("Direction"), e.get("State")) for e in switch.of("MixMonitorMute")]
        assert mutes == [(trunk.name, "both", "1"), (trunk.name, "both", "0")]
        await client.call("StopRecording")
        assert switch.of("MixMonitorStop", Channel=trunk.name)
        await refused("not_recording", client.call("StopRecording"))
        await refused("not_your_call", client.call("StartRecording", call="1.2"))
        changes = [e.data["state"] for e in events if e.name == "RecordingChanged"]
        assert changes == ["recording", "paused", "recording", "stopped"]
        (row,) = await written(daemon, recordings, "the index row", call_id=trunk.linkedid)
        assert (row["agent_id"], row["ani"], row["extension"], row["filename"]) == (
            "1002", "13800138000", "PJSIP/1002", started["file"])
        actions = [(r["action"], r["outcome"]) for r in rows(daemon, audit_log, actor="1002")
                   if r["action"].startswith("record_")]
        assert actions == [("record_start", "ok"), ("record_start", "already_recording"), ("record_pause", "ok"),
                           ("record_pause", "already_paused"), ("record_resume", "ok"), ("record_stop", "ok"),
                           ("record_stop", "not_recording"), ("record_start", "not_your_call")]
        await client.close()
    finally:
        await daemon.stop()


@pytest_twisted.ensureDeferred
async def test_the_policy_records_calls_of_the_listed_queues_and_an_idle_agent_has_no_call(tmp_path):
    """record = queues: an answered call of a listed queue is recorded at once; an agent with no call is refused."""
    daemon = await recording_daemon(tmp_path, "record = queues\nqueues = general\non_demand = yes",
                                    talk_time="60 60")
    try:
        switch = EventRecorder(daemon.world)
        client, events = await desktop(daemon, "1002", ready=True)
        await refused("no_call", client.call("StartRecording"))
        trunk = await talking(daemon, "1002")
        await daemon.until(lambda: switch.of("MixMonitorStart", Channel=trunk.name), "the policy to record")
        await daemon.until(lambda: [e for e in events if e.name == "RecordingChanged"], "the agent to hear of it")
        daemon.world.remote_hangup(trunk, 16)
        (row,) = await written(daemon, recordings, "the index row", call_id=trunk.linkedid)
        assert row["filename"].startswith(f"{SWITCH_DIR}/") and row["agent_id"] == "1002"
        await client.close()
    finally:
        await daemon.stop()


async def recorded_call(daemon, agent):
    """A call of ``agent`` recorded and over; returns (the index row, the agent's client)."""
    client, _ = await desktop(daemon, agent, ready=True)
    trunk = await talking(daemon, agent)
    await client.call("StartRecording")
    daemon.world.remote_hangup(trunk, 16)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end")
    (row,) = await written(daemon, recordings, "the index row", call_id=trunk.linkedid)
    return row, client


@pytest_twisted.ensureDeferred
async def test_rights_to_list_play_and_download(tmp_path):
    """Own recordings, a supervisor's scope, an admin: listed, played on an allowed seat, downloaded once; audited."""
    port = free_port()
    daemon = await recording_daemon(
        tmp_path, f"download_endpoint = tcp:{port}:interface=127.0.0.1\n"
                  f"download_url = http://127.0.0.1:{port}/rec\ntoken_lifetime = 30", talk_time="60 60")
    try:
        switch = EventRecorder(daemon.world)
        row, owner = await recorded_call(daemon, "1002")
        recording = row["record_id"]
        local = tmp_path / "recordings" / row["filename"][len(SWITCH_DIR) + 1:]
        local.parent.mkdir(parents=True)
        local.write_bytes(b"RIFF-recorded-audio")

        listed = await owner.call("ListRecordings", call=row["call_id"])
        assert [r["recording"] for r in listed["recordings"]] == [recording]
        played = await owner.call("PlayRecording", recording=recording)
        assert played["station"] == "PJSIP/1002"
        await daemon.until(lambda: switch.of("OriginateResponse", Application="Playback"), "the seat to play it")
        (response,) = switch.of("OriginateResponse", Application="Playback")
        assert response.get("Data") == row["filename"].rpartition(".")[0] and response.get("Response") == "Success"
        await refused("forbidden_seat", owner.call("PlayRecording", recording=recording, station="1001"))

        other, _ = await desktop(daemon, "1003")
        await refused("forbidden", other.call("PlayRecording", recording=recording))
        await refused("forbidden", other.call("DownloadRecording", recording=recording))
        assert (await other.call("ListRecordings", call=row["call_id"]))["recordings"] == []
        await refused("no_such_recording", other.call("PlayRecording", recording="nope"))

        beijing, _ = await desktop(daemon, "1901")
        await refused("forbidden", beijing.call("DownloadRecording", recording=recording))
        shanghai, _ = await desktop(daemon, "1900")
        await shanghai.call("PlayRecording", recording=recording, station="1002")  # a seat in its scope
        await refused("forbidden_seat", shanghai.call("PlayRecording", recording=recording, station="1003"))
        grant = await shanghai.call("DownloadRecording", recording=recording)
        assert grant["url"].startswith(f"http://127.0.0.1:{port}/rec/") and grant["file"] == local.name

        web = Agent(reactor)
        response = await web.request(b"GET", grant["url"].encode())
        assert response.code == 200 and await readBody(response) == b"RIFF-recorded-audio"
        again = await web.request(b"GET", grant["url"].encode())
        assert again.code == 404
        await readBody(again)

        admin, _ = await desktop(daemon, "1950", station="1960")
        await admin.call("PlayRecording", recording=recording, station="1003")
        local.unlink()
        await refused("file_missing", admin.call("DownloadRecording", recording=recording))

        audit = [(r["actor"], r["action"], r["outcome"]) for r in await written(daemon, audit_log, "the audit")
                 if r["action"].startswith("recording_")]
        assert audit == [
            ("1002", "recording_list", "ok"), ("1002", "recording_play", "ok"),
            ("1002", "recording_play", "forbidden_seat"), ("1003", "recording_play", "forbidden"),
            ("1003", "recording_download", "forbidden"), ("1003", "recording_list", "ok"),
            ("1003", "recording_play", "no_such_recording"), ("1901", "recording_download", "forbidden"),
            ("1900", "recording_play", "ok"), ("1900", "recording_play", "forbidden_seat"),
            ("1900", "recording_download", "ok"), ("1900", "recording_fetch", "ok"),
            ("anonymous", "recording_fetch", "bad_token"), ("1950", "recording_play", "ok"),
            ("1950", "recording_download", "file_missing")]
        for client in (owner, other, beijing, shanghai, admin):
            await client.close()
    finally:
        await daemon.stop()


@pytest_twisted.ensureDeferred
async def test_downloads_are_refused_without_a_download_server(tmp_path):
    """No download_endpoint: DownloadRecording answers download_disabled."""
    daemon = await recording_daemon(tmp_path, "", talk_time="60 60")
    try:
        row, owner = await recorded_call(daemon, "1002")
        await refused("download_disabled", owner.call("DownloadRecording", recording=row["record_id"]))
        await owner.close()
    finally:
        await daemon.stop()
