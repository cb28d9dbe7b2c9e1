"""Wrap-up classification (话后小结): the agent says what its last call was about — ``SetCallCategory``.

The category goes into the call's record (``call_records.category``) and the
monthly report counts complaints and consultations by it (docs/kpis.md).
The agent classifies the call it is handling, or the one whose wrap-up it is
in; once the wrap-up is over the record is written and the category is final.
See docs/cti-protocol.md, "Wrap-up".
"""

from __future__ import annotations

from typing import Any, Protocol

from ctid.protocols.ctiapi import CTIError, CTISession, require_login

#: The categories an agent may give a call: consulting (咨询), complaint (投诉), a transaction done for the
#: caller (业务办理), a suggestion (建议), a report of fraud or misconduct (举报), anything else.
CATEGORIES = ("consultation", "complaint", "transaction", "suggestion", "report", "other")


class Categorizer(Protocol):
    """Keeps the category of an agent's last call (:meth:`ctid.callrecords.CallRecorder.categorize`)."""

    def categorize(self, agent_id: str, category: str) -> str | None: ...


class WrapUpDesk:
    """The ``SetCallCategory`` command, over the call recorder that keeps the category until the record is written."""

    def __init__(self, recorder: Categorizer):
        self.recorder = recorder

    def register(self, router: Any) -> None:
        """Add the command to ``router`` (the agent desk)."""
        router.add("SetCallCategory", self.set_category)

    def set_category(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """``{"category": …}`` → ``{"call", "category"}``: classify the agent's last call."""
        agent_id = require_login(session)["agent"]
        category = args.get("category")
        if category not in CATEGORIES:
            raise CTIError("bad_request", f"category must be one of {', '.join(CATEGORIES)}")
        call_id = self.recorder.categorize(agent_id, category)
        if call_id is None:
            raise CTIError("no_call", "no call to classify: classify the call while handling it or in its wrap-up")
        return {"call": call_id, "category": category}
