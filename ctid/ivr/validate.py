"""The checks a flow passes before any call runs it.

Field shapes come from :mod:`ctid.ivr.schema`; here the flow as a graph:
every node named exists, every node can be reached from the start, every
prompt is in the manifest in the flow's languages, every operation and
outcome is known, and no loop can spin without waiting for the caller.
Each failure is a :class:`~ctid.ivr.model.FlowError` naming file and node.
"""

from __future__ import annotations

from collections.abc import Iterator

from ctid.ivr import schema
from ctid.ivr.model import Flow, FlowError, Node
from ctid.ivr.operations import OPERATIONS
from ctid.ivr.prompts import PromptManifest


def edges(flow: Flow, node: Node) -> Iterator[tuple[str, str]]:
    """(field, target) of every move out of ``node``, with the implicit ones (0 → agent, on_fail → agent)."""
    yield from schema.targets(node)
    if flow.agent is None:
        return
    if node.type == "menu" and "0" not in {digit for digit, _, _ in schema.choice_targets(node)}:
        yield "choices: 0 (agent)", flow.agent
    if node.type in ("menu", "input") and "on_fail" not in node.fields:
        yield "on_fail (agent)", flow.agent


def validate(flow: Flow, manifest: PromptManifest, speech: frozenset[str] = frozenset()) -> None:
    """Raise :class:`FlowError` for the first problem found in ``flow``.

    ``speech``: the languages the configured text-to-speech engine speaks
    (none without one); a ``text`` item needs a recorded fallback unless the
    engine speaks it on every call of the flow.
    """
    for language in flow.languages:
        if language not in manifest.languages:
            raise FlowError(flow.file, f"language {language!r} is not in the prompt manifest {manifest.path}")
    for name in (flow.start, flow.agent):
        if name is not None and name not in flow.nodes:
            raise FlowError(flow.file, f"{'start' if name == flow.start else 'agent'}: unknown node {name!r}")
    for node in flow.nodes.values():
        schema.check_fields(node)
        _check_node(flow, node, manifest)
        _check_text(flow, node, speech)
    _check_reachable(flow)
    _check_loops(flow)


def _check_node(flow: Flow, node: Node, manifest: PromptManifest) -> None:
    for field, target in edges(flow, node):
        if target not in flow.nodes:
            raise FlowError(node.where, f"{field}: unknown node {target!r}")
    for field, prompt in schema.prompts(node):
        if prompt not in manifest:
            raise FlowError(node.where, f"{field}: prompt {prompt!r} is missing from the prompt manifest "
                                        f"{manifest.path}")
    if node.type in ("menu", "input") and "on_fail" not in node.fields and flow.agent is None:
        raise FlowError(node.where, "on_fail: needed when the flow has no agent node")
    if node.type == "operation":
        operation = OPERATIONS.get(node.get("op"))
        if operation is None:
            raise FlowError(node.where, f"op: unknown operation {node.get('op')!r} "
                                        f"(known: {', '.join(sorted(OPERATIONS))})")
        unknown = sorted(set(node.get("outcomes")) - operation.outcomes)
        if unknown:
            raise FlowError(node.where, f"outcomes: {node.get('op')} never ends {unknown[0]!r} "
                                        f"(it ends: {', '.join(sorted(operation.outcomes))})")
    language = node.get("values", {}).get("language") if node.type == "set" else None
    if language is not None and language not in flow.languages:
        raise FlowError(node.where, f"values: language {language!r} is not one of the flow's languages")


def _check_text(flow: Flow, node: Node, speech: frozenset[str]) -> None:
    """Text said by TTS only where configured: without a recorded fallback it must be spoken on every call."""
    for index, item in enumerate(node.get("items", ()) if node.type == "say" else (), 1):
        if "text" not in item:
            continue
        language = item.get("language")
        if language is not None and language not in flow.languages:
            raise FlowError(node.where, f"items: #{index}: language {language!r} is not one of the flow's languages")
        if "fallback" in item or "fallback_key" in item:
            continue
        spoken_in = {language} if language is not None else set(flow.languages)
        unspoken = sorted(set(flow.languages) - (spoken_in & speech))
        if unspoken:
            reason = "[ivr] tts is none" if not speech else f"text to speech will not say it in {unspoken[0]}"
            raise FlowError(node.where, f"items: #{index}: text needs a recorded fallback or fallback_key "
                                        f"({reason})")


def _check_reachable(flow: Flow) -> None:
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        for _, target in edges(flow, flow.nodes[todo.pop()]):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for name, node in flow.nodes.items():
        if name not in seen:
            raise FlowError(node.where, f"unreachable from the start node {flow.start!r}")


def _check_loops(flow: Flow) -> None:
    """A cycle through nodes none of which waits for the caller would spin forever."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        trail.append(name)
        for _, target in edges(flow, flow.nodes[name]):
            if schema.NODE_TYPES[flow.nodes[target].type].waits:
                continue
            if state.get(target) == 1:
                loop = trail[trail.index(target):] + [target]
                raise FlowError(flow.nodes[target].where, f"loop with no input: {' -> '.join(loop)}")
            if target not in state:
                visit(target, trail)
        trail.pop()
        state[name] = 2

    for name, node in flow.nodes.items():
        if name not in state and not schema.NODE_TYPES[node.type].waits:
            visit(name, [])
