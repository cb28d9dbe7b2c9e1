"""Shared fixtures: tests fail on errors logged through twisted.logger; a running daemon for end-to-end tests."""

import pytest
import pytest_twisted
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
    config.addinivalue_line("markers", "sim(**settings): [pbxsim] settings for the daemon fixture")
    config.addinivalue_line("markers", "routes(text): a route rules file for the daemon fixture's [acd] routes")
    config.addinivalue_line("markers", "queue(text): extra lines for the daemon fixture's [queue:general]")
    config.addinivalue_line("markers", "ivr: the daemon fixture loads the bank's IVR flows (conf/ivr)")


@pytest_twisted.async_yield_fixture
async def daemon(tmp_path, request):
    """The whole daemon running against the simulated switch on free loopback ports (no generated traffic).

    ``@pytest.mark.sim(key="value", …)`` overrides [pbxsim] settings for a test or module;
    ``@pytest.mark.routes(text)`` gives it route rules; ``@pytest.mark.queue(text)`` adds lines to its
    ``[queue:general]`` section; ``@pytest.mark.ivr`` loads the bank's IVR flows (conf/ivr).
    """
    from tests.e2e import Daemon, daemon_config

    marker = request.node.get_closest_marker("sim")
    routes = request.node.get_closest_marker("routes")
    queue = request.node.get_closest_marker("queue")
    running = Daemon(daemon_config(tmp_path, routes.args[0] if routes else None, queue.args[0] if queue else "",
                                   ivr=request.node.get_closest_marker("ivr") is not None,
                                   **(marker.kwargs if marker else {})))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def database_url(request, tmp_path_factory):
    """A migrated database of each backend, shared by the module (MySQL: skipped, or failed under CI, if absent)."""
    from ctid.adapters.store import migrate
    from ctid.adapters.store.testing import MySQLUnavailable, mysql_required, temporary_mysql_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'ctid.db'}"
        migrate.upgrade(url)
        yield url
        return
    try:
        with temporary_mysql_database() as url:
            migrate.upgrade(url)
            yield url
    except MySQLUnavailable as e:
        if mysql_required():
            pytest.fail(f"CTID_REQUIRE_MYSQL=1 but {e}")
        pytest.skip(f"{e} (set CTID_TEST_MYSQL_URL, or CTID_REQUIRE_MYSQL=1 to fail instead)")


def wipe_tables(connection):
    """Runs in a database pool: empty every table (children first)."""
    from sqlalchemy import delete

    from ctid.adapters.store.schema import metadata

    for table in reversed(metadata.sorted_tables):
        connection.execute(delete(table))
