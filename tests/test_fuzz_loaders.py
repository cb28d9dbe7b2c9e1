"""Hostile input for the loaders: any configuration text gives a Config or a one-line ConfigError, and any flow
files give a FlowLibrary or a FlowError — no other exception escapes."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ctid import config
from ctid.ivr.loader import load_library
from ctid.ivr.model import FlowError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLOWS = settings(FUZZ, max_examples=40)  # each example reads the prompt manifest (pure-Python YAML)
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


#: A small valid flow (the bank's first nodes) as the base the damage tests start from: loading it is fast.
SMALL_FLOW = {
    "flow": "small", "languages": ["zh", "en"], "start": "language", "agent": "agent",
    "nodes": {
        "language": {"type": "input", "prompt": "choose-language", "store": "language_key", "min": 1, "max": 1,
                     "terminator": "", "timeout": 3000, "retries": 0, "next": "language_choice", "on_fail": "main"},
        "language_choice": {"type": "branch", "var": "language_key", "cases": {"1": "chinese", "2": "english",
                                                                               "0": "agent"}, "default": "chinese"},
        "chinese": {"type": "set", "values": {"language": "zh"}, "next": "main"},
        "english": {"type": "set", "values": {"language": "en"}, "next": "main"},
        "main": {"type": "menu", "prompt": "main-menu", "invalid": "invalid-choice",
                 "choices": {"1": "trouble", "0": "agent"}},
        "trouble": {"type": "prompt", "prompt": "bank-unavailable", "next": "main"},
        "agent": {"type": "transfer", "prompt": "transferring-to-agent"},
    },
}


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


@FLOWS
@given(st.lists(st.integers(0, 50), max_size=5), _YAML)
def test_a_damaged_flow_gives_a_flow_error(path, replacement):
    """A valid flow with one value anywhere replaced by anything: a library or a one-line FlowError."""
    damaged = _mutate(SMALL_FLOW, path, replacement)
    assume(isinstance(damaged, dict))
    _load({"small.yaml": yaml.safe_dump(damaged, allow_unicode=True)})


def test_the_undamaged_flow_loads():
    """The damage tests start from a valid flow."""
    _load({"small.yaml": yaml.safe_dump(SMALL_FLOW)})


def test_a_flow_whose_agent_is_not_a_name_gives_a_flow_error():
    """``agent: []`` (found by fuzzing) is refused with a FlowError like ``start: []`` is."""
    folder = tempfile.mkdtemp(prefix="ctid-fuzz-flows-")
    try:
        with open(os.path.join(folder, "small.yaml"), "w", encoding="utf-8") as f:
            f.write(yaml.safe_dump(dict(SMALL_FLOW, agent=[])))
        with pytest.raises(FlowError, match="agent: expected a node name"):
            load_library(folder, MANIFEST)
    finally:
        shutil.rmtree(folder)


@FLOWS
@given(st.text(max_size=300))
def test_any_text_as_a_flow_file_gives_a_flow_error(text):
    """Arbitrary text (YAML or not, tags, anchors) as the only flow file: a FlowError."""
    _load({"main.yaml": text})
