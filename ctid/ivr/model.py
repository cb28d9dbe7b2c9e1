"""What a loaded flow is: named nodes, a start, the agent hand-off node, its languages.

A :class:`Flow` is immutable once loaded; a call keeps the object it started
with, so reloading the files never changes a running call.  Node fields are
kept as the file gave them (checked by :mod:`ctid.ivr.schema`); each node
remembers the file it came from so every error can name file and node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FlowError(Exception):
    """A flow file or the prompt manifest is wrong: ``where`` names the file (and node), ``problem`` says what."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class Node:
    """One step of a flow: its name, type, the file it is defined in and its fields."""

    name: str
    type: str
    file: str
    fields: Mapping[str, Any]

    @property
    def where(self) -> str:
        """``file: node NAME``, for error messages."""
        return f"{self.file}: node {self.name}"

    def get(self, key: str, default: Any = None) -> Any:
        """A field's value, or ``default``."""
        return self.fields.get(key, default)


@dataclass(frozen=True)
class Flow:
    """A validated flow: run from ``start``; 0 at a menu goes to ``agent``."""

    name: str
    file: str
    start: str
    agent: str | None
    languages: tuple[str, ...]
    nodes: Mapping[str, Node]


@dataclass(frozen=True)
class FlowLibrary:
    """Every flow loaded from a directory, and the prompt manifest they were checked against."""

    directory: str
    flows: Mapping[str, Flow]
    manifest: Any  # ctid.ivr.prompts.PromptManifest (kept untyped to avoid an import cycle)
