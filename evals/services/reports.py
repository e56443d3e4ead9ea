"""Evaluation reports: an LLM reads the lowest-scoring traces of a run,
groups them by failure pattern and suggests concrete improvements. Every
group must point at traces of the run; groups that do not are dropped."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from evals.gateway_client import GatewayCallError, GatewayClient
from evals.judge import as_text, extract_json
from evals.langfuse_client import LangfuseError
from evals.models import EvalReport, EvalRun, EvalScore, RunStatus, ScoreStatus
from evals.service_keys import service_key
from gateway.models import ModelRoute
from gateway.services.keys import usable_routes

log = logging.getLogger(__name__)
LOWEST = 20
CHARS_PER_TRACE = 1500

PROMPT = """You review the weakest results of an automated evaluation ("{evaluator}") of an AI application.
Below are the lowest-scoring traces: their id, score, the judge's reasoning, input and output.

{traces}

Group the traces by failure pattern (what went wrong, in the same way). For each group say what to change,
concretely (prompt, retrieval, model, tool, guardrail), and list the ids of the traces that show it.
Answer with a JSON object only:
{{"summary": "<two sentences>", "groups": [{{"pattern": "<short name>", "explanation": "<what goes wrong>",
"suggestion": "<a concrete improvement>", "trace_ids": ["<id>", ...]}}]}}"""


@transaction.atomic
def report_create(*, run: EvalRun, route: ModelRoute) -> EvalReport:
    """A queued report through `route`, which must be usable by the run's
    project (like a judge route or a benchmark's routes)."""
    project = run.project
    if not usable_routes(project.team_id, project.organization_id).filter(is_active=True, pk=route.pk).exists():
        raise ValidationError({"route": "The route is not available to this project's team."})
    EvalReport.objects.filter(run=run).delete()
    report = EvalReport.objects.create(run=run, route=route)
    from evals.tasks import generate_report

    transaction.on_commit(lambda: generate_report.delay(report.pk))
    return report


def evidence(run: EvalRun) -> list[EvalScore]:
    return list(EvalScore.objects.filter(run=run, status=ScoreStatus.SCORED).order_by("value", "trace_id")[:LOWEST])


def describe(scores: list[EvalScore], traces: dict[str, dict[str, Any]]) -> str:
    blocks = []
    for s in scores:
        t = traces.get(s.trace_id, {})
        blocks.append(f"- id: {s.trace_id}\n  score: {s.label or s.value}\n  judge: {s.comment[:400]}\n"
                      f"  input: {as_text(t.get('input'))[:CHARS_PER_TRACE]}\n"
                      f"  output: {as_text(t.get('output'))[:CHARS_PER_TRACE]}")
    return "\n".join(blocks)


def render_markdown(summary: str, groups: list[dict[str, Any]], link: Any) -> str:
    lines = [summary.strip(), ""] if summary else []
    for g in groups:
        lines += [f"### {g['pattern']}", g.get("explanation", ""), f"**Suggestion:** {g['suggestion']}",
                  "Traces: " + ", ".join(f"[{t}]({link(t)})" for t in g["trace_ids"]), ""]
    return "\n".join(lines).strip()


def clean_groups(data: Any, known: set[str]) -> list[dict[str, Any]]:
    groups = []
    for g in (data.get("groups") if isinstance(data, dict) else None) or []:
        if not isinstance(g, dict):
            continue
        listed = g.get("trace_ids")
        ids = [str(t) for t in listed if str(t) in known] if isinstance(listed, list) else []
        if ids and g.get("pattern") and g.get("suggestion"):
            groups.append({"pattern": str(g["pattern"])[:200], "explanation": str(g.get("explanation", ""))[:2000],
                           "suggestion": str(g["suggestion"])[:2000], "trace_ids": ids})
    return groups


def generate(report_id: int) -> EvalReport:
    report = EvalReport.objects.select_related("run__project", "run__evaluator_version__evaluator", "route").get(
        pk=report_id)
    run = report.run
    report.status = RunStatus.RUNNING
    report.save(update_fields=["status"])
    conn = getattr(run.project, "langfuse_connection", None)
    scores = evidence(run)
    try:
        if not scores:
            raise ValueError("The run has no scored traces to report on.")
        traces: dict[str, dict[str, Any]] = {}
        if conn is not None:
            with conn.client() as client:
                for s in scores:
                    try:
                        traces[s.trace_id] = client.trace(s.trace_id)
                    except LangfuseError as exc:
                        log.info("report: trace %s not read: %s", s.trace_id, exc)
        prompt = PROMPT.format(evaluator=run.evaluator_version.evaluator.name, traces=describe(scores, traces))
        answer = GatewayClient(service_key(run.project)).chat(
            report.route.name, [{"role": "user", "content": prompt}], purpose="report", temperature=0,
            max_tokens=2000)
        report.cost = Decimal(str(answer.cost))
        try:
            data = extract_json(answer.content)
        except ValueError:  # json's own message ("Expecting value: line 1 column 1") says nothing to a user
            raise ValueError("The route's answer was not the report's JSON: pick a route whose model follows "
                             "the report prompt (a judge-grade model).") from None
        if not isinstance(data, dict):
            raise ValueError("The route's answer was JSON but not the report's object.")
        groups = clean_groups(data, {s.trace_id for s in scores})
        if not groups:
            raise ValueError("The answer had no failure pattern linked to traces of the run.")

        def link(trace_id: str) -> str:
            return conn.trace_url(trace_id) if conn else trace_id

        report.groups = groups
        report.content = render_markdown(str(data.get("summary", "")), groups, link)
        report.status = RunStatus.SUCCEEDED
    except (ValueError, GatewayCallError) as exc:
        report.status, report.error = RunStatus.FAILED, str(exc)[:1000]
    except Exception:  # never left `running`: nothing looks at reports again
        log.exception("report %s failed", report_id)
        report.status, report.error = RunStatus.FAILED, "The report stopped on an unexpected error (it is logged)."
    report.finished_at = timezone.now()
    report.save()
    return report

