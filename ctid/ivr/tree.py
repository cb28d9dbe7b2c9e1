"""A flow as a text tree, for ``scripts/ctid-ivrcheck --tree``: each node once, later mentions as ``-> name``."""

from __future__ import annotations

from ctid.ivr.model import Flow, Node
from ctid.ivr.validate import edges


def _describe(node: Node) -> str:
    detail = {"menu": "prompt", "input": "store", "prompt": "prompt", "operation": "op", "branch": "var",
              "record": "kind", "transfer": "queue"}.get(node.type)
    value = node.get(detail) if detail else None
    return f"{node.name} [{node.type}{f' {value}' if value else ''}]"


def render(flow: Flow) -> list[str]:
    """The lines of the tree of ``flow`` from its start node."""
    lines = [f"flow {flow.name} ({', '.join(flow.languages)}), 0 at a menu -> {flow.agent or 'nothing'}"]
    seen: set[str] = set()

    def walk(name: str, via: str, depth: int) -> None:
        indent = "    " * depth + (f"{via}: " if via else "")
        if name in seen:
            lines.append(f"{indent}-> {name}")
            return
        seen.add(name)
        node = flow.nodes[name]
        lines.append(indent + _describe(node))
        for field, target in edges(flow, node):
            if "(agent)" not in field:
                walk(target, field, depth + 1)

    walk(flow.start, "", 0)
    if flow.agent is not None:
        walk(flow.agent, "0 at any menu", 0)
    return lines
