"""Hostile input for the loaders: any configuration text gives a Config or a one-line ConfigError, and any flow
files give a FlowLibrary or a FlowError — no other exception escapes."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctid import config
from ctid.ivr.loader import load_library
from ctid.ivr.model import FlowError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONF = pathlib.Path(__file__).resolve().parent.parent / "conf"
MANIFEST = str(CONF / "prompts" / "manifest.yaml")

_VALUE = st.one_of(
    st.text(max_size=30).map(lambda v: v.replace("\n", " ").replace("\r", " ")),
    st.sampled_from(["yes", "no", "0", "-1", "1e309", "nan", "inf", "1 2", "2 1", "tcp:0", "ssl:", "tls:x:1",
                     "tcp:1:interface=0.0.0.0", "unix:/tmp/x", "sqlite:///", "mysql+pymysql://", "021=Shanghai",
                     "x" * 300, "%(home)s", "${X}", "0123456789abcdef0123456789abcdef", "", " "]),
)
_SECTION = st.sampled_from(sorted(config.SCHEMA) + ["queue:general", "queue:x", "nope", "queue:"])


@st.composite
def _ini(draw):
    lines = []
    for section in draw(st.lists(_SECTION, max_size=5)):
        lines.append(f"[{section}]")
        known = sorted(config.SCHEMA.get(section, config.QUEUE_SCHEMA))
        for key in draw(st.lists(st.sampled_from(known + ["typo", "enabled"]), max_size=5)):
            lines.append(f"{key} = {draw(_VALUE)}")
    return "\n".join(lines) + "\n"


def _parse(text: str) -> None:
    try:
        config.parse(text, "fuzz.ini")
    except config.ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.ini")


@FUZZ
@given(_ini())
def test_any_settings_give_a_config_or_a_config_error(text):
    """Known sections and keys with hostile values: a Config or a one-line ConfigError naming the file."""
    _parse("[ami]\nsecret = fuzz-secret\n" + text)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_gives_a_config_or_a_config_error(text):
    """Arbitrary text (broken headers, continuation lines, NULs) never raises anything else."""
    _parse(text)


def _bank_flows() -> dict[str, object]:
    return {path.name: yaml.safe_load(path.read_text()) for path in (CONF / "ivr").glob("*.yaml")}


_YAML_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=12),
                         st.sampled_from(["main", "menu", "say", "operation", "transfer", "hangup", "input",
                                          "zh", "en", "balance-is"]))
_YAML = st.recursive(_YAML_SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)


def _mutate(data, path: list[int], replacement):
    """Replace one value somewhere in ``data`` (a walk chosen by ``path``) with ``replacement``."""
    if not path or not isinstance(data, dict | list) or not data:
        return replacement
    keys = list(data) if isinstance(data, dict) else list(range(len(data)))
    key = keys[path[0] % len(keys)]
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[key] = _mutate(data[key], path[1:], replacement)
    return copy


def _load(files: dict[str, str]) -> None:
    folder = tempfile.mkdtemp(prefix="ctid-fuzz-flows-")
    try:
        for name, text in files.items():
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(text)
        try:
            load_library(folder, MANIFEST)
        except FlowError as e:
            assert "\n" not in str(e)
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(st.sampled_from(sorted(_bank_flows())), st.lists(st.integers(0, 50), max_size=6), _YAML)
def test_a_damaged_bank_flow_gives_a_flow_error(name, path, replacement):
    """The bank's real flows with one value replaced by anything: a library or a one-line FlowError."""
    flows = _bank_flows()
    flows[name] = _mutate(flows[name], path, replacement)
    _load({file: yaml.safe_dump(data, allow_unicode=True) for file, data in flows.items()})


@FUZZ
@given(st.text(max_size=300))
def test_any_text_as_a_flow_file_gives_a_flow_error(text):
    """Arbitrary text (YAML or not, tags, anchors) as the only flow file: a FlowError."""
    _load({"main.yaml": text})
