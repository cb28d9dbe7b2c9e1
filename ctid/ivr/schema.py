"""The node types and their fields: what each may hold, what it points to, which prompts it plays.

:data:`NODE_TYPES` is the whitelist (a typo in a field name is an error,
not a silently ignored key).  :func:`check_fields` checks one node's fields;
:func:`targets` and :func:`prompts` list the nodes and prompts it refers to,
for the graph checks in :mod:`ctid.ivr.validate`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ctid.ivr.model import FlowError, Node

_NAME = re.compile(r"^[A-Za-z_][\w-]*$")
_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_VARIABLE = re.compile(r"^CTID_[A-Z0-9_]+$")
DTMF = "0123456789*#"
#: Input formats: what the digits typed become.
FORMATS = ("digits", "date", "amount", "id")
#: What a say item speaks, by its key.
SAY_KINDS = ("prompt", "number", "digits", "money", "date", "percent", "decimal", "key", "text", "sign")
#: Voice messages left in the IVR.
MESSAGE_KINDS = ("message", "complaint")


@dataclass(frozen=True)
class NodeType:
    """A node type: its required and optional fields, and whether it waits for the caller (breaks a loop)."""

    required: frozenset[str]
    optional: frozenset[str]
    waits: bool = False


def _type(required: str, optional: str = "", waits: bool = False) -> NodeType:
    return NodeType(frozenset(required.split()), frozenset(optional.split()), waits)


NODE_TYPES: dict[str, NodeType] = {
    "menu": _type("prompt choices", "label timeout retries invalid on_fail", waits=True),
    "input": _type("prompt store next", "min max terminator timeout retries sensitive format invalid on_fail",
                   waits=True),
    "prompt": _type("prompt next"),
    "say": _type("items next", "each empty"),
    "branch": _type("var cases default"),
    "operation": _type("op outcomes default"),
    "set": _type("values next"),
    "transfer": _type("", "prompt queue menu data"),
    "record": _type("prompt kind next", "max_seconds", waits=True),
    "hangup": _type("", "prompt"),
}
#: Fields holding one node name.
TARGET_FIELDS = ("next", "on_fail", "default")


def _fail(node: Node, problem: str) -> FlowError:
    return FlowError(node.where, problem)


def _name(node: Node, field: str, value: Any) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise _fail(node, f"{field}: expected a name (letters, digits, _ and -), got {value!r}")


def _path(node: Node, field: str, value: Any) -> None:
    if not isinstance(value, str) or not _PATH.match(value):
        raise _fail(node, f"{field}: expected a variable such as balance or item.amount_fen, got {value!r}")


def _integer(low: int, high: int) -> Callable[[Node, str, Any], None]:
    def check(node: Node, field: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _fail(node, f"{field}: expected a whole number from {low} to {high}, got {value!r}")

    return check


def _boolean(node: Node, field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(node, f"{field}: expected true or false, got {value!r}")


def _one_of(*allowed: str) -> Callable[[Node, str, Any], None]:
    def check(node: Node, field: str, value: Any) -> None:
        if value not in allowed:
            raise _fail(node, f"{field}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")

    return check


def _text(node: Node, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fail(node, f"{field}: expected some text, got {value!r}")


def _mapping(node: Node, field: str, value: Any) -> dict:
    if not isinstance(value, dict) or not value:
        raise _fail(node, f"{field}: expected a mapping with at least one entry")
    return value


def _choices(node: Node, field: str, value: Any) -> None:
    for digit, choice in _mapping(node, field, value).items():
        if str(digit) not in DTMF or len(str(digit)) != 1:
            raise _fail(node, f"choices: {digit!r} is not one DTMF key")
        if isinstance(choice, dict):
            unknown = set(choice) - {"next", "label"}
            if unknown or "next" not in choice:
                raise _fail(node, f"choices: {digit}: expected a node name or {{next: NODE, label: TEXT}}")
            _name(node, f"choices: {digit}: next", choice["next"])
            _name(node, f"choices: {digit}: label", choice.get("label", choice["next"]))
        else:
            _name(node, f"choices: {digit}", choice)


def _cases(node: Node, field: str, value: Any) -> None:
    for case, target in _mapping(node, field, value).items():
        _name(node, f"{field}: {case}", target)


def _values(node: Node, field: str, value: Any) -> None:
    for key, item in _mapping(node, field, value).items():
        _name(node, f"{field}: {key}", key)
        if not isinstance(item, (str, int, bool)):
            raise _fail(node, f"{field}: {key}: expected text, a number or true/false")


def _data(node: Node, field: str, value: Any) -> None:
    for key, item in _mapping(node, field, value).items():
        if not isinstance(key, str) or not _VARIABLE.match(key):
            raise _fail(node, f"data: {key!r}: channel variables handed to the agent are named CTID_…")
        if not isinstance(item, (str, int)):
            raise _fail(node, f"data: {key}: expected text or a number")


def _items(node: Node, field: str, value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise _fail(node, "items: expected a list of things to say")
    for index, item in enumerate(value, 1):
        kinds = [key for key in item if key in SAY_KINDS] if isinstance(item, dict) else []
        if len(kinds) != 1:
            raise _fail(node, f"items: #{index}: expected one of {', '.join(SAY_KINDS)} (e.g. money: balance)")
        kind = kinds[0]
        extra = set(item) - {kind} - _ITEM_OPTIONS.get(kind, set())
        if extra:
            raise _fail(node, f"items: #{index}: unknown key {sorted(extra)[0]!r}")
        if kind == "prompt":
            _name(node, f"items: #{index}: prompt", item[kind])
        else:
            _path(node, f"items: #{index}: {kind}", item[kind])
        if kind == "key":
            _name(node, f"items: #{index}: prefix", item.get("prefix"))
        if kind == "sign":
            for key in ("minus", "plus"):
                _name(node, f"items: #{index}: {key}", item.get(key))
        if kind == "text":
            _text_options(node, index, item)


def _text_options(node: Node, index: int, item: dict[str, Any]) -> None:
    """A text item's recorded fallbacks (``fallback``, ``fallback_key`` + ``prefix``) and its ``language``."""
    where = f"items: #{index}"
    if "fallback" in item:
        _name(node, f"{where}: fallback", item["fallback"])
    if "fallback_key" in item:
        _path(node, f"{where}: fallback_key", item["fallback_key"])
        _name(node, f"{where}: prefix", item.get("prefix"))
    elif "prefix" in item:
        raise _fail(node, f"{where}: prefix: only with fallback_key (the prompt prefix+value)")
    if "language" in item:
        _name(node, f"{where}: language", item["language"])


_ITEM_OPTIONS = {"key": {"prefix"}, "text": {"fallback", "fallback_key", "prefix", "language"},
                 "sign": {"minus", "plus"}}

FIELD_CHECKS: dict[str, Callable[[Node, str, Any], Any]] = {
    "prompt": _name, "invalid": _name, "empty": _name, "label": _name, "store": _name, "var": _path,
    "each": _path, "op": _name, "queue": _name, "menu": _name,
    "next": _name, "on_fail": _name, "default": _name,
    "choices": _choices, "cases": _cases, "outcomes": _cases, "values": _values, "data": _data, "items": _items,
    "timeout": _integer(500, 60_000), "retries": _integer(0, 9), "min": _integer(0, 64), "max": _integer(1, 64),
    "max_seconds": _integer(1, 600), "sensitive": _boolean, "terminator": _one_of("#", ""),
    "format": _one_of(*FORMATS), "kind": _one_of(*MESSAGE_KINDS),
}


def check_fields(node: Node) -> None:
    """Raise :class:`FlowError` naming the node if a field is missing, unknown or malformed."""
    spec = NODE_TYPES.get(node.type)
    if spec is None:
        raise _fail(node, f"unknown node type {node.type!r} (known: {', '.join(NODE_TYPES)})")
    missing = sorted(spec.required - set(node.fields))
    if missing:
        raise _fail(node, f"{missing[0]}: missing (a {node.type} node needs {', '.join(sorted(spec.required))})")
    unknown = sorted(set(node.fields) - spec.required - spec.optional)
    if unknown:
        known = sorted(spec.required | spec.optional)
        raise _fail(node, f"{unknown[0]}: unknown field for a {node.type} node (known: {', '.join(known)})")
    for field, value in node.fields.items():
        FIELD_CHECKS[field](node, field, value)
    if node.get("min", 0) > node.get("max", 64):
        raise _fail(node, "min: greater than max")
    if node.type == "input" and node.get("terminator", "#") == "" and "max" not in node.fields:
        raise _fail(node, "max: an input without a terminator needs a fixed length")


def choice_targets(node: Node) -> Iterator[tuple[str, str, str]]:
    """(digit, next node, label) of each menu choice."""
    choices: dict[str | int, str | dict[str, str]] = node.get("choices", {})
    for digit, choice in choices.items():
        if isinstance(choice, dict):
            yield str(digit), choice["next"], choice.get("label", choice["next"])
        else:
            yield str(digit), choice, choice


def targets(node: Node) -> Iterator[tuple[str, str]]:
    """(field, node name) of every node this node can go to."""
    for digit, target, _ in choice_targets(node):
        yield f"choices: {digit}", target
    for field in ("cases", "outcomes"):
        for key, target in node.get(field, {}).items():
            yield f"{field}: {key}", target
    for field in TARGET_FIELDS:
        if field in node.fields:
            yield field, node.fields[field]


def prompts(node: Node) -> Iterator[tuple[str, str]]:
    """(field, prompt name) of every recorded prompt this node plays."""
    for field in ("prompt", "invalid", "empty"):
        if field in node.fields:
            yield field, node.fields[field]
    for index, item in enumerate(node.get("items", ()), 1):
        for key in ("prompt", "fallback", "minus", "plus"):
            if key in item:
                yield f"items: #{index}: {key}", item[key]
