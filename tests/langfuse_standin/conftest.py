"""Makes the `langfuse_standin` fixture available to the stand-in's own tests."""

from tests.langfuse_standin.fixtures import langfuse_standin  # noqa: F401
