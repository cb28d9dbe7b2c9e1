"""The agents' story in the log: every state change in plain words (the service log goes to the database later)."""

from __future__ import annotations

from twisted.logger import Logger

from ctid.agents import AgentBoard
from ctid.agentstate import AgentNotHungUp, AgentRecord, AgentTransition

log = Logger(namespace="ctid.agents")


class AgentLogger:
    """Logs each agent record at info level: ``agent 1001: ready → reserved (reserve, call 1795.3)``."""

    def __init__(self, board: AgentBoard):
        self.board = board
        board.subscribe(self.record)

    def record(self, record: AgentRecord) -> None:
        """Log one record."""
        if isinstance(record, AgentTransition):
            log.info(
                "agent {agent}: {old} → {new} ({trigger}{call}{reason}{forced})",
                agent=record.agent_id,
                old=record.old.value,
                new=record.new.value,
                trigger=record.trigger,
                call=f", call {record.call_id}" if record.call_id else "",
                reason=f", reason {record.reason}" if record.reason else "",
                forced=f", by {record.forced_by}" if record.forced_by else "",
            )
        elif isinstance(record, AgentNotHungUp):
            log.info("agent {agent}: phone off hook with no call (not hung up); no calls offered",
                          agent=record.agent_id)
        else:
            log.info("agent {agent}: phone hung up again", agent=record.agent_id)
