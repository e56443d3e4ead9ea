"""Pytest fixtures for the Langfuse stand-in, and the check that fails a test
during which a stand-in recorded a violation of the Langfuse spec.

A client request that breaks the spec gets the 400 Langfuse would send, and
client code may well swallow that 400: so after each test, every stand-in
started in the process (this fixture's, the end-to-end stack's, a test's own)
is asked for the violations it recorded since the previous test, and any fails
the test. A test that provokes violations on purpose clears them
(``server.violations.clear()``) or is marked ``@pytest.mark.langfuse_violations``.

Use with ``pytest_plugins = ["tests.langfuse_standin.fixtures"]`` in the root conftest,
or import it where needed: ``from tests.langfuse_standin.fixtures import langfuse_standin``
(in a conftest.py or the test module).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from .server import STARTED, LangfuseStandin

PROJECT_ID = "p1"
PUBLIC_KEY = "pk-lf-test-1"
SECRET_KEY = "sk-lf-test-1"


@pytest.fixture
def langfuse_standin() -> Iterator[LangfuseStandin]:
    """A started v4 stand-in with project ``p1`` (keys ``pk-lf-test-1``/``sk-lf-test-1``)."""
    server = LangfuseStandin(version=4)
    server.add_project(PROJECT_ID, "Project 1", PUBLIC_KEY, SECRET_KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "langfuse_violations: the test provokes Langfuse spec violations on "
                                       "purpose; the stand-ins do not fail it for them")


def take_violations() -> list[str]:
    """Every started stand-in's violations since the last call, as `url: violation`."""
    return [f"{_name(server)}: {v}" for server in list(STARTED) for v in server.take_violations()]


def _name(server: LangfuseStandin) -> str:
    try:
        return server.url
    except RuntimeError:
        return "a stopped stand-in"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Fail the test if a stand-in recorded a spec violation (since the previous test ended: a
    late request of the previous test, e.g. an exported span, is reported here rather than lost)."""
    try:
        result = yield
    except BaseException:
        take_violations()  # the test failed anyway; start the next one clean
        raise
    found = take_violations()
    if found and item.get_closest_marker("langfuse_violations") is None:
        pytest.fail("The Langfuse stand-in recorded requests that violate the Langfuse API spec:\n  "
                    + "\n  ".join(found), pytrace=False)
    return result
