"""Shared fixtures: every test fails on errors logged through twisted.logger."""

import pytest
from twisted.logger import LogLevel, globalLogPublisher


@pytest.fixture(autouse=True)
def fail_on_logged_errors(request):
    """Collect critical/error log events during a test and fail the test if any appear.

    A test that expects errors marks itself ``@pytest.mark.allow_logged_errors``.
    """
    seen = []

    def observer(event):
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observer)
    if seen and request.node.get_closest_marker("allow_logged_errors") is None:
        from twisted.logger import formatEvent

        pytest.fail("errors were logged: " + "; ".join(formatEvent(e) for e in seen[:5]))


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_logged_errors: the test expects errors in the log")
