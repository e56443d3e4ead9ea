"""The evaluation agent's read-only data tools, scoped to one project by the portal.

`specs()` is the OpenAI `tools` parameter for them; `call(ctx, name, raw_arguments)` runs one and
never raises for what the model caused (an unknown tool, malformed JSON, arguments the schema
refuses, a trace that is not there, Langfuse failing): those come back as `ToolResult(error=...)`.

- `base`: ToolContext, ToolResult, argument validation, the window clip, the bounds of a result
- `traces`: search_traces, read_trace (the project's Langfuse, with the portal's usage and scores)
- `scores`: score_stats, compare (the portal's evaluation scores and gateway requests)
- `metrics`: langfuse_metrics (the metrics API, the query built here from typed arguments)
- `usage`: portal_usage (the project's gateway requests by route, key, day or error class)"""

from __future__ import annotations

import logging
from typing import Any

from evals.agent.tools import metrics, scores, traces, usage
from evals.agent.tools.base import MAX_RESULT_CHARS, MAX_ROWS, Tool, ToolContext, ToolError, ToolResult, failure
from evals.langfuse_client import LangfuseError

log = logging.getLogger(__name__)

TOOLS: dict[str, Tool] = {t.name: t for t in (*traces.TOOLS, *scores.TOOLS, *metrics.TOOLS, *usage.TOOLS)}
NAMES = tuple(TOOLS)


def specs() -> list[dict[str, Any]]:
    """The data tools as the OpenAI `tools` parameter (type function, JSON schema, additionalProperties false)."""
    return [tool.spec() for tool in TOOLS.values()]


def call(ctx: ToolContext, name: str, raw_arguments: str | dict[str, Any] | None) -> ToolResult:
    """Run the data tool `name` with the model's arguments, for `ctx.project` only."""
    tool = TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        shown = name[:60] if isinstance(name, str) else type(name).__name__
        return failure(f"unknown tool {shown!r}; the data tools are: {', '.join(NAMES)}")
    try:
        return tool.run(ctx, tool.arguments(raw_arguments))
    except ToolError as exc:
        return failure(str(exc))
    except LangfuseError as exc:
        return failure(f"Langfuse: {exc}")
    except Exception:
        log.exception("agent tool %s failed (project %s)", name, ctx.project.pk)
        return failure("the tool failed")


__all__ = ["MAX_RESULT_CHARS", "MAX_ROWS", "NAMES", "ToolContext", "ToolResult", "call", "specs"]
