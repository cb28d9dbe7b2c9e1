"""A circuit breaker for the host link: fail fast while the host is down, then try again with one trade.

States and transitions (one table, :data:`TRANSITIONS`):

- ``closed``: trades go through; ``failure_threshold`` host failures in a
  row (timeouts, link down, host malfunction answers) open it.
- ``open``: trades are refused at once; after ``reset_timeout`` seconds the
  next trade finds it ``half_open``.
- ``half_open``: exactly one trade goes through as a trial; its success
  closes the breaker, its failure opens it again; others are refused meanwhile.

A business refusal (wrong password, insufficient funds) is a *success* here:
the host answered.  Pure: time comes from the injected clock.
"""

from __future__ import annotations

from twisted.logger import Logger

log = Logger()

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

#: (state, event) -> next state; events: "success", "failure" (threshold reached), "trial" (reset time passed).
TRANSITIONS = {
    (CLOSED, "failure"): OPEN,
    (OPEN, "trial"): HALF_OPEN,
    (HALF_OPEN, "success"): CLOSED,
    (HALF_OPEN, "failure"): OPEN,
}


class CircuitBreaker:
    """Counts host failures and decides whether a trade may go out (see the module docstring)."""

    def __init__(self, clock, failure_threshold: int = 5, reset_timeout: float = 30.0, name: str = "host"):
        if failure_threshold < 1 or reset_timeout <= 0:
            raise ValueError("failure_threshold must be at least 1 and reset_timeout positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.state = CLOSED
        self.failures = 0
        self.opened = 0
        self._clock = clock
        self._opened_at = 0.0
        self._trial_out = False

    def _move(self, event: str) -> None:
        new = TRANSITIONS[(self.state, event)]
        log.info("circuit breaker {name}: {old} -> {new}", name=self.name, old=self.state, new=new)
        self.state = new
        if new == OPEN:
            self._opened_at = self._clock.seconds()
            self.opened += 1

    def allow(self) -> bool:
        """True when a trade may go out now (in half-open state, only the one trial)."""
        if self.state == OPEN and self._clock.seconds() - self._opened_at >= self.reset_timeout:
            self._move("trial")
            self._trial_out = False
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def succeeded(self) -> None:
        """The host answered."""
        self.failures = 0
        if self.state == HALF_OPEN:
            self._move("success")

    def failed(self) -> None:
        """The host failed a trade (no answer in time, link down, or a malfunction answer)."""
        self.failures += 1
        if self.state == HALF_OPEN or (self.state == CLOSED and self.failures >= self.failure_threshold):
            self._move("failure")
