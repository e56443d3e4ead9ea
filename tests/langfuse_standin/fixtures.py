"""Pytest fixtures for the Langfuse stand-in.

Use with ``pytest_plugins = ["tests.langfuse_standin.fixtures"]`` in the root conftest,
or import it where needed: ``from tests.langfuse_standin.fixtures import langfuse_standin``
(in a conftest.py or the test module).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import LangfuseStandin

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
