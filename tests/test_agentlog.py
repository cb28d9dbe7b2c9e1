"""The agents' story in plain words."""

from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from ctid.agentlog import AgentLogger
from ctid.agents import AgentBoard


def test_transitions_are_logged_in_plain_words():
    """Each state change is one info line naming the agent, both states, the trigger, call and reason."""
    board = AgentBoard(Clock(), wrap_up_time=0)
    AgentLogger(board)
    lines = []
    observer = lambda event: lines.append(formatEvent(event)) if event.get("log_namespace") == "ctid.agents" else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        board.login("1001", "PJSIP/1001")
        board.ready("1001")
        board.reserve("1001", "c-1")
        board.pause("1001", "lunch")
        board.offer_cancelled("1001", "c-1")
        board.phone_off_hook("1001")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert lines == [
        "agent 1001: logged_out → not_ready (login)",
        "agent 1001: not_ready → ready (ready)",
        "agent 1001: ready → reserved (reserve, call c-1)",
        "agent 1001: reserved → not_ready (offer_cancelled, call c-1, reason lunch)",
    ]
