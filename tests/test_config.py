"""Configuration loading: the embedded defaults, and one clear line for every mistake."""

from pathlib import Path

import pytest

from ctid import config

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = "[ami]\nsecret = s3cret\n"


def error_for(text: str) -> str:
    with pytest.raises(config.ConfigError) as info:
        config.parse(text, "test.ini")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_embedded_defaults_load():
    """conf/ctid.ini, the embedded default, validates and runs the simulator."""
    settings = config.load(str(ROOT / "conf" / "ctid.ini"))
    assert settings.pbxsim.enabled
    assert settings.ami.secret == settings.pbxsim.simulator.secret
    assert settings.pbxsim.simulator.agents == ("1001", "1002", "1003", "1004")
    assert settings.pbxsim.simulator.answer_delay == (1.0, 4.0)


def test_minimal_file_takes_defaults():
    """Only the AMI secret is required; everything else has a default."""
    settings = config.parse(MINIMAL)
    assert settings.ami.endpoint.startswith("tcp:")
    assert settings.ami.md5 is True
    assert settings.manhole.enabled is False
    assert settings.pbxsim.enabled is False


def test_secret_not_in_repr():
    """Secrets never show up in the settings' repr (and so in logs of it)."""
    settings = config.parse(MINIMAL + "[manhole]\nenabled = yes\npassword = manhole-pass\n")
    assert "s3cret" not in repr(settings)
    assert "manhole-pass" not in repr(settings)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[ami]\nusername = x\n", "test.ini: [ami] secret: missing required setting"),
        (MINIMAL + "pingg_interval = 3\n", "test.ini: [ami] pingg_interval: unknown setting"),
        (MINIMAL + "ping_timeout = -1\n", "test.ini: [ami] ping_timeout: must be greater than 0"),
        (MINIMAL + "ping_timeout = soon\n", "test.ini: [ami] ping_timeout: could not convert"),
        (MINIMAL + "md5 = maybe\n", "test.ini: [ami] md5: expected yes or no"),
        (MINIMAL + "endpoint = carrier-pigeon:5038\n", "test.ini: [ami] endpoint: invalid endpoint"),
        (MINIMAL + "endpoint = tcp:host-without-port\n", "test.ini: [ami] endpoint: invalid endpoint"),
        (MINIMAL + "[fastagi]\nendpoint = tcp:notaport\n", "test.ini: [fastagi] endpoint: invalid endpoint"),
        (MINIMAL + "[manhole]\nendpoint = tcp:6023\n", "test.ini: [manhole] endpoint: must listen on localhost only"),
        (
            MINIMAL + "[manhole]\nendpoint = tcp:6023:interface=0.0.0.0\n",
            "[manhole] endpoint: must listen on localhost",
        ),
        (MINIMAL + "[manhole]\nenabled = yes\npassword = short\n", "test.ini: [manhole] password: needs at least 8"),
        (MINIMAL + "[ctid]\nlog_level = loud\n", "test.ini: [ctid] log_level: expected one of"),
        (MINIMAL + "[pbxsim]\nivr_share = 1.5\n", "test.ini: [pbxsim] ivr_share: must be between 0 and 1"),
        (MINIMAL + "[pbxsim]\ntalk_time = 90 20\n", "test.ini: [pbxsim] talk_time: expected 0 <= low <= high"),
        (MINIMAL + "[pbxsim]\nagents =\n", "test.ini: [pbxsim] agents: must list at least one value"),
        (MINIMAL + "[acdd]\nstrategy = x\n", "test.ini: [acdd]: unknown section"),
        (MINIMAL + "[acd]\nstrategy = x\n", "test.ini: [acd] strategy: unknown setting"),
        (MINIMAL + "[queue:q]\nstrategy = longest_idle\n", "test.ini: [queue:q] group: missing required setting"),
        (MINIMAL + "[queue:q]\ngroup = g\nstrategy = fastest\n", "test.ini: [queue:q] strategy: expected one of"),
        (MINIMAL + "[queue:q]\ngroup = g\nmin_level = 12\n", "test.ini: [queue:q]: queue q: min_level must be 1..9"),
        (MINIMAL + "[queue:q]\ngroup = g\n", "test.ini: [acd] default_queue: no [queue:general] section"),
        (MINIMAL + "[acd]\ncities = 021:Shanghai\n", "test.ini: [acd] cities: expected prefix=City pairs"),
        ("this is not ini\n", "test.ini: File contains no section headers."),
        ("[ami]\nsecret = a\nsecret = b\n", "test.ini: While reading from 'test.ini'"),
    ],
)
def test_bad_settings_name_file_section_and_key(text, expected):
    """Each mistake gives one line naming the file, the section and the key."""
    assert expected in error_for(text)


def test_missing_file(tmp_path):
    """A missing file is named in a one-line error."""
    path = tmp_path / "nope.ini"
    with pytest.raises(config.ConfigError, match=r"nope\.ini: cannot read configuration file"):
        config.load(str(path))


def test_binary_file(tmp_path):
    """A file that is not UTF-8 text gives a clear error, not a traceback."""
    path = tmp_path / "binary.ini"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(config.ConfigError, match="not UTF-8 text"):
        config.load(str(path))


def test_every_documented_key_is_known_and_every_known_key_documented():
    """docs/configuration.md and the schema list the same sections and keys."""
    import re

    text = (ROOT / "docs" / "configuration.md").read_text()
    documented: dict[str, set[str]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = re.match(r"## \[([\w:]+)\]", line)
            section = heading.group(1) if heading else None
            if section:
                documented[section] = set()
        elif section and line.startswith("| `"):
            documented[section].update(re.findall(r"`(\w+)`", line.split("|")[1]))
    expected = {name: set(keys) for name, keys in config.SCHEMA.items()}
    expected["queue:NAME"] = set(config.QUEUE_SCHEMA)
    assert documented == expected


def test_queues_and_vip_rules():
    """[queue:NAME] sections become ACD queues; [acd] picks the default queue, VIPs and caller cities."""
    settings = config.parse(
        MINIMAL
        + "[queue:cards]\ngroup = accounts\nstrategy = least_avg_talk\nlocal_preference = yes\n"
        + "overflow_after = 30\n[queue:experts]\ngroup = experts\nmin_level = 7\npriority = 2\n"
        + "[acd]\ndefault_queue = cards\nvip_prefixes = 139\ncities = 021=Shanghai 010=Beijing\n"
    )
    cards, experts = settings.acd.queues
    assert (cards.name, cards.group, cards.strategy, cards.local_preference, cards.overflow_after) == (
        "cards", "accounts", "least_avg_talk", True, 30.0)
    assert (experts.min_level, experts.priority) == (7, 2)
    assert settings.acd.default_queue == "cards"
    assert settings.acd.vip_prefixes == ("139",)
    assert settings.acd.cities == (("021", "Shanghai"), ("010", "Beijing"))
