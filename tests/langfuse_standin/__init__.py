"""A faithful local stand-in for the Langfuse API (v4 and v3), for tests.

See `server.LangfuseStandin` and `fixtures.langfuse_standin`.
"""

from .server import Fault, LangfuseStandin
from .spec import load_spec

__all__ = ["Fault", "LangfuseStandin", "load_spec"]
