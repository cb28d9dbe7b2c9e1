"""Flow files and the prompt manifest: the bank's flows load; every kind of mistake is named by file and node."""

import pathlib
import textwrap

import pytest

from ctid import config
from ctid.ivr import schema
from ctid.ivr.loader import load_library
from ctid.ivr.model import FlowError
from ctid.ivr.prompts import load_manifest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFEST = str(ROOT / "conf" / "prompts" / "manifest.yaml")

GOOD = """
flow: demo
languages: [zh, en]
start: main
agent: agent
nodes:
  main:
    type: menu
    prompt: main-menu
    choices:
      "1": {next: bye, label: balance}
  agent:
    type: transfer
  bye:
    type: hangup
    prompt: message-saved-goodbye
"""


def library(tmp_path, text, **extra_files):
    folder = tmp_path / "ivr"
    folder.mkdir(exist_ok=True)
    (folder / "demo.yaml").write_text(textwrap.dedent(text))
    for name, body in extra_files.items():
        (folder / name).write_text(textwrap.dedent(body))
    return load_library(str(folder), MANIFEST)


def error(tmp_path, text, **extra_files) -> str:
    with pytest.raises(FlowError) as caught:
        library(tmp_path, text, **extra_files)
    return str(caught.value)


def test_the_bank_flows_load():
    """conf/ivr holds the bank flow, valid against the shipped manifest, in Chinese and English."""
    lib = load_library(str(ROOT / "conf" / "ivr"), MANIFEST)
    bank = lib.flows["bank"]
    assert (bank.start, bank.agent, bank.languages) == ("language", "agent", ("zh", "en"))
    assert {node.type for node in bank.nodes.values()} == set(schema.NODE_TYPES)
    assert bank.nodes["account"].file.endswith("personal.yaml")


def test_a_good_flow_loads_and_reloads_equal(tmp_path):
    """Loading the same files twice gives equal libraries (what a reload compares)."""
    assert library(tmp_path, GOOD) == library(tmp_path, GOOD)


@pytest.mark.parametrize("change, expected", [
    (("next: bye", "next: nowhere"), "demo.yaml: node main: choices: 1: unknown node 'nowhere'"),
    (("prompt: message-saved-goodbye", "prompt: no-such-prompt"),
     "demo.yaml: node bye: prompt: prompt 'no-such-prompt' is missing from the prompt manifest"),
    (("type: hangup", "type: teleport"), "demo.yaml: node bye: unknown node type 'teleport'"),
    (("    type: transfer", "    type: transfer\n    colour: red"),
     "demo.yaml: node agent: colour: unknown field for a transfer node"),
    (('"1": {next: bye, label: balance}', '"12": bye'), "demo.yaml: node main: choices: '12' is not one DTMF key"),
    (("start: main", "start: nope"), "demo.yaml: start: unknown node 'nope'"),
    (("languages: [zh, en]", "languages: [zh, fr]"), "demo.yaml: language 'fr' is not in the prompt manifest"),
])
def test_mistakes_are_named_by_file_and_node(tmp_path, change, expected):
    """Unknown node, missing prompt, unknown type or field, bad key, bad start, unknown language: one clear line."""
    assert expected in error(tmp_path, GOOD.replace(*change))


def test_unreachable_node(tmp_path):
    """A node nothing leads to is an error naming it."""
    text = GOOD + "  orphan:\n    type: hangup\n"
    assert "demo.yaml: node orphan: unreachable from the start node 'main'" in error(tmp_path, text)


def test_unknown_operation_and_outcome(tmp_path):
    """An operation the engine does not know, or an outcome it never ends with, is refused."""
    text = GOOD.replace("next: bye, label: balance", "next: ask, label: balance") + textwrap.indent(
        "ask:\n  type: operation\n  op: launch_rocket\n  outcomes: {ok: bye}\n  default: bye\n", "  ")
    assert "demo.yaml: node ask: op: unknown operation 'launch_rocket'" in error(tmp_path, text)
    wrong = text.replace("launch_rocket", "balance").replace("{ok: bye}", "{ok: bye, exploded: bye}")
    assert "node ask: outcomes: balance never ends 'exploded'" in error(tmp_path, wrong)


def test_loop_with_no_input(tmp_path):
    """Nodes that go round without ever waiting for the caller would spin: refused, the loop shown."""
    text = GOOD.replace("next: bye, label: balance", "next: one, label: balance") + textwrap.indent(
        "one:\n  type: prompt\n  prompt: no-information\n  next: two\n"
        "two:\n  type: branch\n  var: x\n  cases: {a: bye}\n  default: one\n", "  ")
    assert "loop with no input: one -> two -> one" in error(tmp_path, text)
    waits = text.replace("default: one", "default: main")
    assert library(tmp_path, waits).flows["demo"].nodes["two"].type == "branch"


def test_included_files(tmp_path):
    """Nodes may live in included files; an error there names that file; a stray file is refused."""
    text = GOOD.replace("nodes:", "include: [more.yaml]\nnodes:").replace("next: bye, label", "next: far, label")
    more = "nodes:\n  far:\n    type: prompt\n    prompt: nope\n    next: bye\n"
    assert "more.yaml: node far: prompt: prompt 'nope' is missing" in error(tmp_path, text, **{"more.yaml": more})
    ok = library(tmp_path, text, **{"more.yaml": more.replace("nope", "no-information")})
    assert ok.flows["demo"].nodes["far"].file.endswith("more.yaml")
    stray = "nodes:\n  x:\n    type: hangup\n"
    assert "stray.yaml: not a flow (no flow key) and included by none" in error(
        tmp_path, text, **{"more.yaml": more.replace("nope", "no-information"), "stray.yaml": stray})
    twice = more.replace("far:", "bye:")
    assert "more.yaml: node bye: defined twice" in error(tmp_path, text, **{"more.yaml": twice})


def test_bad_yaml_and_missing_fields(tmp_path):
    """Broken YAML and missing required fields get one line each."""
    assert "demo.yaml: not valid YAML" in error(tmp_path, "flow: [unclosed\n")
    assert "node bye: next: missing" in error(tmp_path, GOOD.replace("type: hangup", "type: prompt"))


def test_manifest_checks(tmp_path):
    """A prompt without one language's wording, or a missing number piece, is named."""
    text = pathlib.Path(MANIFEST).read_text()
    broken = tmp_path / "manifest.yaml"
    broken.write_text(text.replace("    en: Your balance is\n", ""))
    with pytest.raises(FlowError, match="prompt balance-is: no en wording"):
        load_manifest(str(broken))
    broken.write_text(text.replace("    num-7: seven\n", ""))
    with pytest.raises(FlowError, match="pieces: en: missing num-7"):
        load_manifest(str(broken))
    manifest = load_manifest(MANIFEST)
    assert manifest.file("main-menu", "en") == "ctid/en/main-menu" and "main-menu" in manifest


def test_config_loads_the_flows_and_refuses_bad_ones(tmp_path):
    """[ivr] flows loads at start-up; a bad flow stops it with one line naming the file and the node."""
    (tmp_path / "ivr").mkdir()
    (tmp_path / "ivr" / "demo.yaml").write_text(GOOD)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "manifest.yaml").write_text(pathlib.Path(MANIFEST).read_text())
    text = "[ami]\nsecret = s\n[ivr]\nflows = ivr\ndefault_language = en\n"
    settings = config.parse(text, str(tmp_path / "ctid.ini"))
    assert list(settings.ivr.library.flows) == ["demo"] and settings.ivr.default_language == "en"
    (tmp_path / "ivr" / "demo.yaml").write_text(GOOD.replace("next: bye", "next: gone"))
    with pytest.raises(config.ConfigError, match=r"ctid.ini: \[ivr\] flows: .*demo.yaml: node main: choices: 1: "
                                                 r"unknown node 'gone'"):
        config.parse(text, str(tmp_path / "ctid.ini"))
    (tmp_path / "ivr" / "demo.yaml").write_text(GOOD)
    with pytest.raises(config.ConfigError, match=r"\[ivr\] default_language: 'fr' is not in the prompt manifest"):
        config.parse(text.replace("= en", "= fr"), str(tmp_path / "ctid.ini"))
    assert config.parse("[ami]\nsecret = s\n").ivr.library is None


def test_checker_prints_the_tree_and_names_errors(tmp_path, capsys):
    """scripts/ctid-ivrcheck: ok per flow, a tree with each node once, and the error line with exit status 1."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("ivrcheck", str(ROOT / "scripts" / "ctid-ivrcheck"))
    spec = importlib.util.spec_from_loader("ivrcheck", loader)
    checker = importlib.util.module_from_spec(spec)
    loader.exec_module(checker)
    assert checker.main([str(ROOT / "conf" / "ivr"), "--prompts", MANIFEST]) == 0
    assert capsys.readouterr().out.startswith("bank: ok, ")
    library(tmp_path, GOOD)
    assert checker.main([str(tmp_path / "ivr"), "--prompts", MANIFEST, "--tree", "demo"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "flow demo (zh, en), 0 at a menu -> agent",
        "main [menu main-menu]",
        "    choices: 1: bye [hangup]",
        "0 at any menu: agent [transfer]",
    ]
    (tmp_path / "ivr" / "demo.yaml").write_text(GOOD.replace("next: bye", "next: gone"))
    assert checker.main([str(tmp_path / "ivr"), "--prompts", MANIFEST]) == 1
    assert "demo.yaml: node main: choices: 1: unknown node 'gone'" in capsys.readouterr().err


def test_a_changed_flow_file_is_a_live_ivr_change_on_reload(tmp_path):
    """SIGHUP: a flow file edited on disk shows as an [ivr] change, which the daemon applies live."""
    from ctid.reload import changed_settings

    (tmp_path / "ivr").mkdir()
    (tmp_path / "ivr" / "demo.yaml").write_text(GOOD)
    text = f"[ami]\nsecret = s\n[ivr]\nflows = ivr\nprompts = {MANIFEST}\n"
    before = config.parse(text, str(tmp_path / "ctid.ini"))
    assert changed_settings(before, config.parse(text, str(tmp_path / "ctid.ini"))) == []
    (tmp_path / "ivr" / "demo.yaml").write_text(GOOD.replace("message-saved-goodbye", "no-information"))
    after = config.parse(text, str(tmp_path / "ctid.ini"))
    assert changed_settings(before, after) and all(name.startswith("ivr.") for name in changed_settings(before, after))
