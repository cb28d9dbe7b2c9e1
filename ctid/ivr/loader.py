"""Read flow files (YAML) into validated :class:`~ctid.ivr.model.Flow` objects.

A flow file has ``flow`` (its name: the FastAGI script ``agi://host/NAME``),
``start``, optional ``agent`` (where 0 at any menu goes), ``languages``
(the first is the default), optional ``include`` (more files of ``nodes``,
relative to it) and ``nodes``.  Every ``*.yaml`` in the flows directory that
has a ``flow`` key is a flow; the others must be included by one.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any

import yaml

from ctid.ivr.model import Flow, FlowError, FlowLibrary, Node
from ctid.ivr.prompts import PromptManifest, load_manifest
from ctid.ivr.schema import _NAME
from ctid.ivr.validate import validate

FLOW_KEYS = {"flow", "start", "agent", "languages", "include", "nodes"}


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise FlowError(path, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise FlowError(path, "not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise FlowError(path, f"not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise FlowError(path, "expected a mapping with flow, start and nodes")
    unknown = sorted(set(data) - FLOW_KEYS)
    if unknown:
        raise FlowError(path, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(FLOW_KEYS))})")
    return data


def _nodes(path: str, data: dict[str, Any], into: dict[str, Node]) -> None:
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise FlowError(path, "nodes: expected a mapping of node names to nodes")
    for name, fields in nodes.items():
        where = f"{path}: node {name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise FlowError(where, "a node name is letters, digits, _ and -")
        if name in into:
            raise FlowError(where, f"defined twice (also in {into[name].file})")
        if not isinstance(fields, dict) or not isinstance(fields.get("type"), str):
            raise FlowError(where, "expected a mapping with a type")
        fields = dict(fields)
        into[name] = Node(name, fields.pop("type"), path, MappingProxyType(fields))


def load_flow(path: str, manifest: PromptManifest, speech: frozenset[str] = frozenset()) -> tuple[Flow, list[str]]:
    """Read and validate the flow at ``path`` (``speech``: the languages TTS speaks); returns it and the files it
    included."""
    data = _read(path)
    for key in ("flow", "start"):
        if not isinstance(data.get(key), str) or not _NAME.match(data[key]):
            raise FlowError(path, f"{key}: expected a name")
    if data.get("agent") is not None and (not isinstance(data["agent"], str) or not _NAME.match(data["agent"])):
        raise FlowError(path, "agent: expected a node name")
    languages = data.get("languages", list(manifest.languages[:1]))
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        raise FlowError(path, "languages: expected a list such as [zh, en]")
    includes = data.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(x, str) for x in includes):
        raise FlowError(path, "include: expected a list of file names")
    nodes: dict[str, Node] = {}
    _nodes(path, data, nodes)
    included = []
    for name in includes:
        full = os.path.join(os.path.dirname(path), name)
        extra = _read(full)
        if set(extra) != {"nodes"}:
            raise FlowError(full, "an included file holds nodes only")
        _nodes(full, extra, nodes)
        included.append(os.path.abspath(full))
    flow = Flow(data["flow"], path, data["start"], data.get("agent"), tuple(languages), MappingProxyType(nodes))
    validate(flow, manifest, speech)
    return flow, included


def load_library(directory: str, manifest_path: str, speech: frozenset[str] = frozenset()) -> FlowLibrary:
    """Every flow in ``directory``, checked against the manifest at ``manifest_path`` and the languages text to
    speech speaks (``speech``, none by default)."""
    manifest = load_manifest(manifest_path)
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith((".yaml", ".yml")))
    except OSError as e:
        raise FlowError(directory, f"cannot list the flows directory: {e.strerror}") from None
    flows: dict[str, Flow] = {}
    included: set[str] = set()
    parts = []
    for name in names:
        path = os.path.join(directory, name)
        if "flow" not in _read(path):
            parts.append(path)
            continue
        flow, files = load_flow(path, manifest, speech)
        if flow.name in flows:
            raise FlowError(path, f"flow {flow.name!r} is also defined in {flows[flow.name].file}")
        flows[flow.name] = flow
        included.update(files)
    for path in parts:
        if os.path.abspath(path) not in included:
            raise FlowError(path, "not a flow (no flow key) and included by none")
    if not flows:
        raise FlowError(directory, "no flow files (*.yaml with a flow key)")
    return FlowLibrary(os.path.abspath(directory), MappingProxyType(flows), manifest)
