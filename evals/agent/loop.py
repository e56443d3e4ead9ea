"""The evaluation agent's loop: a model on the admin-picked route, called
through the gateway with the project's service key (budgeted, in usage),
turns tool calls into the data tools' results (evals/agent/tools.py, scoped
to the project and the report's window by the portal) until it finishes
the report, or answers a follow-up question.

- Claim: a conditional UPDATE (queued or running -> running), as runs are
  claimed (evals/lifecycle.py); a finished report or answer is never run again.
  A retried task resumes: the conversation is rebuilt from the stored steps.
- Bounds, checked before every model call: steps (model turns), tokens
  (prompt + completion, from usage), wall time and spend (the gateway's
  x-litellm-response-cost). Each is a clean stop: `partial`, with what was
  found kept (`failed` only when nothing was done). So is the gateway's
  budget refusal.
- Every step is stored: the model's message (text, tool calls, tokens, cost,
  latency, its own trace id) and each tool call (arguments as sent, what the
  model was shown, the structured result and its traces, the error). What the
  model causes (malformed arguments, an unknown tool, a finding whose evidence
  does not hold) is a tool result it sees, never a crash.
- Findings are checked at once (evals/agent/evidence.py); refused ones are
  counted in `findings_dropped` with the reason in `dropped`."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError
from django.db.models import Max, Sum
from django.utils import timezone

from evals.agent import prompts, tools
from evals.agent.evidence import Checked, Invalid, Refused, StepView, check_citations, check_finding
from evals.agent.models import AgentFinding, AgentMessage, AgentReport, AgentStep
from evals.gateway_client import Completion, GatewayCallError, GatewayClient, ToolCall
from evals.models import RunStatus
from evals.service_keys import service_key

log = logging.getLogger(__name__)

MAX_FINDINGS = 50
MAX_DROPPED_KEPT = 100  # dropped findings listed (all are counted)
MAX_ARGUMENT_CHARS = 8000
MAX_CONTENT_CHARS = 20000
MAX_RESULT_BYTES = 200_000
CALL_MAX_TOKENS = 4096  # completion tokens of one model call (less when the token bound is nearer)
UNEXPECTED = "The agent stopped on an unexpected error (it is logged); what it found is kept."
FINISHED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED)


class Stop(Exception):
    """End the conversation cleanly, keeping what was done."""

    def __init__(self, reason: str, *, error: str = "") -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


def gateway(api_key: str, timeout: float) -> GatewayClient:
    """The gateway client of one conversation (tests replace it)."""
    return GatewayClient(api_key, timeout=timeout, max_retries=2)


@dataclass
class Used:
    """What one conversation used so far (its stored model steps)."""

    steps: int = 0
    tokens: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))


class Conversation:
    """One investigation (`message` None) or one follow-up answer, from claim to final state."""

    def __init__(self, report: AgentReport, message: AgentMessage | None = None) -> None:
        self.report, self.message = report, message
        self.answering = message is not None
        self.started = time.monotonic()
        self.controls = prompts.ANSWER_CONTROLS if self.answering else prompts.INVESTIGATION_CONTROLS
        self.data_specs = tools.specs()
        self.data_names = {s["function"]["name"] for s in self.data_specs}
        self.control_names = {s["function"]["name"] for s in self.controls}
        self.done = False  # finish_report / answer was called
        self.ended = ""  # why the model ended without it
        steps = AgentStep.objects.filter(report=report)
        self.by_index = {s.index: view(s) for s in steps.filter(kind="tool")}
        self.next_index = (steps.aggregate(m=Max("index"))["m"] or 0) + 1
        own = steps.filter(kind="model", message=message)
        totals = own.aggregate(n=Sum("prompt_tokens"), c=Sum("completion_tokens"), s=Sum("cost"))
        self.used = Used(own.count(), (totals["n"] or 0) + (totals["c"] or 0), totals["s"] or Decimal(0))

    # Bounds ---------------------------------------------------------------

    def check_bounds(self) -> None:
        r, used = self.report, self.used
        if used.steps >= r.max_steps:
            raise Stop(f"step limit reached ({r.max_steps} model turns)")
        if used.tokens >= r.max_tokens:
            raise Stop(f"token limit reached ({used.tokens} of {r.max_tokens} tokens)")
        if self.elapsed() >= r.max_seconds:
            raise Stop(f"time limit reached ({r.max_seconds} s)")
        if used.cost >= r.max_spend:
            raise Stop(f"spend limit reached (${used.cost:.6f} of ${r.max_spend})")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # The conversation -----------------------------------------------------

    def opening(self) -> list[dict[str, Any]]:
        r = self.report
        system = {"role": "system", "content": prompts.system(max_steps=r.max_steps, answering=self.answering)}
        if self.message is None:
            task = prompts.investigation(project=r.project.name, start=r.window_start, end=r.window_end,
                                         focus=r.focus)
            return [system, {"role": "user", "content": task}]
        earlier = list(AgentMessage.objects.filter(report=r, id__lt=self.message.pk).order_by("created_at", "id"))
        question = next((m for m in reversed(earlier) if m.role == "user"), None)
        conversation = [(m.role, m.content) for m in earlier if m is not question and m.status in FINISHED]
        findings = [{"index": f.index, "title": f.title, "problem": f.problem, "count": f.count, "share": f.share,
                     "change_kind": f.change_kind, "change": f.change, "trace_ids": f.trace_ids, "steps": f.steps}
                    for f in r.findings.all()]
        context = prompts.report_context(summary=r.summary, findings=findings, conversation=conversation,
                                         start=r.window_start, end=r.window_end)
        return [system, {"role": "user", "content": "The report so far (JSON):\n" + context},
                {"role": "user", "content": "Question from the team: " + (question.content if question else "")}]

    def history(self) -> list[dict[str, Any]]:
        """The opening and, for a resumed conversation, what its stored steps say was said."""
        messages = self.opening()
        pending: list[str] = []
        for step in AgentStep.objects.filter(report=self.report, message=self.message).order_by("index"):
            if step.kind == "model":
                messages += [{"role": "tool", "tool_call_id": c, "content": interrupted()} for c in pending]
                calls = step.arguments if isinstance(step.arguments, list) else []
                messages.append(assistant(step.content, calls))
                pending = [c["id"] for c in calls]
            elif step.tool_call_id in pending:
                pending.remove(step.tool_call_id)
                messages.append({"role": "tool", "tool_call_id": step.tool_call_id, "content": step.result_digest})
        messages += [{"role": "tool", "tool_call_id": c, "content": interrupted()} for c in pending]
        return messages

    def run(self) -> None:
        """Model turns until the model finishes, ends or a bound stops it (Stop)."""
        messages = self.history()
        conn = getattr(self.report.project, "langfuse_connection", None)
        langfuse = conn.client() if conn is not None and conn.enabled else None
        ctx = tools.ToolContext(project=self.report.project, window_start=self.report.window_start,
                                window_end=self.report.window_end, langfuse=langfuse)
        api_key = service_key(self.report.project)
        try:
            while not self.done and not self.ended:
                self.check_bounds()
                completion = self.call(api_key, messages)
                calls = self.record_model(completion, messages)
                if not calls:
                    self.ended = "the model ended without " + ("an answer" if self.answering else "finish_report")
                    self.no_control(completion.content)
                for call in calls:
                    self.run_tool(ctx, call, messages)
        finally:
            if langfuse is not None:
                langfuse.close()

    def call(self, api_key: str, messages: list[dict[str, Any]]) -> Completion:
        r = self.report
        remaining = r.max_seconds - self.elapsed()
        try:
            return gateway(api_key, max(5.0, min(120.0, remaining))).chat(
                r.route.name, messages, purpose="agent", tools=[*self.data_specs, *self.controls],
                tool_choice="auto", max_tokens=max(256, min(CALL_MAX_TOKENS, r.max_tokens - self.used.tokens)))
        except GatewayCallError as exc:
            if exc.budget:
                raise Stop(f"the gateway refused the call: {exc}"[:300]) from None
            raise Stop(f"the model call failed: {exc}"[:300], error=str(exc)[:1000]) from None

    def record_model(self, completion: Completion, messages: list[dict[str, Any]]) -> list[ToolCall]:
        calls = [ToolCall(id=(c.id or f"call_{self.next_index}_{n}")[:100], name=c.name, arguments=c.arguments)
                 for n, c in enumerate(completion.tool_calls)]
        asked = [{"id": c.id, "name": c.name[:100], "arguments": c.arguments[:MAX_ARGUMENT_CHARS]} for c in calls]
        cost = Decimal(str(completion.cost))
        tokens = completion.prompt_tokens + completion.completion_tokens
        self.save_step(kind="model", content=completion.content[:MAX_CONTENT_CHARS], arguments=asked or None,
                       prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                       cost=cost, latency_ms=completion.latency_ms, llm_trace_id=completion.trace_id[:64])
        self.used.steps, self.used.tokens, self.used.cost = self.used.steps + 1, self.used.tokens + tokens, \
            self.used.cost + cost
        r = self.report
        r.steps_taken, r.tokens_used, r.cost = r.steps_taken + 1, r.tokens_used + tokens, r.cost + cost
        r.save(update_fields=["steps_taken", "tokens_used", "cost"])
        if self.message is not None:
            self.message.cost = self.used.cost
            self.message.save(update_fields=["cost"])
        messages.append(assistant(completion.content, asked))
        return calls

    def save_step(self, **fields: Any) -> AgentStep:
        step = AgentStep.objects.create(report=self.report, message=self.message, index=self.next_index, **fields)
        self.next_index += 1
        return step

    # Tools ----------------------------------------------------------------

    def run_tool(self, ctx: tools.ToolContext, call: ToolCall, messages: list[dict[str, Any]]) -> None:
        index = self.next_index
        if call.name in self.control_names:
            result = self.control(call.name, call.arguments, index)
        elif call.name in self.data_names:
            try:
                result = tools.call(ctx, call.name, call.arguments)
            except Exception:  # the contract says it never raises; a bug in a tool must not end the report
                log.exception("agent tool %s failed", call.name)
                result = tools.ToolResult(text="", data={}, trace_ids=[], error="the tool failed")
        else:
            offered = ", ".join(sorted(self.data_names | self.control_names))
            result = tools.ToolResult(text="", data={}, trace_ids=[],
                                      error=f"unknown tool {call.name[:100]!r}; the tools are: {offered}")
        digest = prompts.tool_message(index, call.name[:100], text=result.text, error=result.error)
        data = result.data if len(json.dumps(result.data, default=str)) <= MAX_RESULT_BYTES else {"truncated": True}
        trace_ids = [str(t)[:200] for t in result.trace_ids[:500]]
        step = self.save_step(kind="tool", tool_call_id=call.id, tool_name=call.name[:100],
                              arguments=sent_arguments(call.arguments), result_digest=digest,
                              result=json.loads(json.dumps(data, default=str)), trace_ids=trace_ids,
                              truncated=result.truncated, error=result.error[:500])
        self.by_index[step.index] = view(step)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": digest})

    def control(self, name: str, raw: str, index: int) -> tools.ToolResult:
        arguments = parse_arguments(raw)
        if arguments is None:
            return tools.ToolResult(text="", data={}, trace_ids=[], error="the arguments are not a JSON object")
        if self.done:
            return tools.ToolResult(text="", data={}, trace_ids=[], error="already finished")
        if name == "record_finding":
            return self.record_finding(arguments)
        if name == "finish_report":
            summary = arguments.get("summary")
            if not isinstance(summary, str):
                return tools.ToolResult(text="", data={}, trace_ids=[], error="'summary' must be a string")
            self.report.summary, self.done = summary.strip()[:4000], True
            self.report.save(update_fields=["summary"])
            return outcome({"finished": True})
        return self.record_answer(arguments)

    def record_finding(self, arguments: dict[str, Any]) -> tools.ToolResult:
        r = self.report
        if r.findings.count() >= MAX_FINDINGS:
            return tools.ToolResult(text="", data={}, trace_ids=[], error=f"at most {MAX_FINDINGS} findings")
        try:
            checked = check_finding(arguments, self.by_index)
        except Invalid as exc:
            return tools.ToolResult(text="", data={}, trace_ids=[], error=f"not a finding: {exc}")
        except Refused as refused:
            self.drop(arguments, refused.reason)
            return outcome({"kept": False, "reason": refused.reason})
        finding = save_finding(r, checked)
        return outcome({"kept": True, "finding": finding.index, "count": finding.count, "share": finding.share,
                        "cost": float(finding.cost) if finding.cost is not None else None})

    def drop(self, arguments: dict[str, Any], reason: str) -> None:
        r = self.report
        r.findings_dropped += 1
        if len(r.dropped) < MAX_DROPPED_KEPT:
            title = arguments.get("title")
            r.dropped = [*r.dropped, {"title": str(title)[:200] if title else "", "reason": reason[:500],
                                      "trace_ids": [str(t)[:200] for t in listed(arguments.get("trace_ids"))][:20],
                                      "steps": [s for s in listed(arguments.get("steps")) if isinstance(s, int)][:20]}]
        r.save(update_fields=["findings_dropped", "dropped"])

    def record_answer(self, arguments: dict[str, Any]) -> tools.ToolResult:
        message = self.message
        assert message is not None
        text = arguments.get("text")
        if not isinstance(text, str) or not text.strip():
            return tools.ToolResult(text="", data={}, trace_ids=[], error="'text' must be a non-empty string")
        kept, refused = check_citations(arguments.get("evidence"), self.by_index)
        message.content, message.evidence, message.evidence_dropped = text.strip()[:8000], kept, len(refused)
        message.save(update_fields=["content", "evidence", "evidence_dropped"])
        self.done = True
        return outcome({"answered": True, "evidence_kept": len(kept), "evidence_refused": refused[:20]})

    def no_control(self, content: str) -> None:
        """The model ended with text only: that text is the summary (or the answer), nothing cited."""
        text = content.strip()
        if self.message is not None:
            self.message.content = text[:8000]
            self.message.save(update_fields=["content"])
        elif text and not self.report.summary:
            self.report.summary = text[:4000]
            self.report.save(update_fields=["summary"])


# Helpers ------------------------------------------------------------------


def view(step: AgentStep) -> StepView:
    return StepView(index=step.index, kind=step.kind, tool_name=step.tool_name, error=step.error,
                    trace_ids=tuple(str(t) for t in (step.trace_ids or [])), data=step.result)


def assistant(content: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
    return message


def interrupted() -> str:
    return json.dumps({"error": "the call was interrupted (the agent was restarted); call it again if needed"})


def outcome(data: dict[str, Any]) -> tools.ToolResult:
    return tools.ToolResult(text=json.dumps(data), data=data, trace_ids=[])


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def sent_arguments(raw: str) -> Any:
    """The arguments as the model sent them, for the record: parsed when JSON, else the bounded text."""
    if len(raw) <= MAX_ARGUMENT_CHARS:
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            pass
    return raw[:MAX_ARGUMENT_CHARS]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def save_finding(report: AgentReport, checked: Checked) -> AgentFinding:
    index = (report.findings.aggregate(m=Max("index"))["m"] or 0) + 1
    return AgentFinding.objects.create(
        report=report, index=index, key=checked.key, title=checked.title, problem=checked.problem,
        count=checked.count, share=checked.share, cost=checked.cost, change_kind=checked.change_kind,
        change=checked.change, trace_ids=checked.trace_ids, steps=checked.steps)


# The lifecycle ------------------------------------------------------------


def claim(model: type[AgentReport] | type[AgentMessage], pk: int, **extra: Any) -> bool:
    updates: dict[str, Any] = {"status": RunStatus.RUNNING}
    if model is AgentReport:
        updates["started_at"] = timezone.now()
    return bool(model.objects.filter(pk=pk, status__in=[RunStatus.QUEUED, RunStatus.RUNNING], **extra)
                .update(**updates))


def converse(conversation: Conversation) -> tuple[str, str, str]:
    """Run the conversation; its final (status, stop_reason, error)."""
    try:
        conversation.run()
    except Stop as stop:
        did = conversation.used.steps > 0
        return (RunStatus.PARTIAL if did else RunStatus.FAILED), stop.reason, stop.error or (
            "" if did else stop.reason)
    except SoftTimeLimitExceeded:
        reason = f"time limit reached ({conversation.report.max_seconds} s)"
        return (RunStatus.PARTIAL if conversation.used.steps else RunStatus.FAILED), reason, ""
    except DatabaseError:
        raise  # the task retries; the retry resumes from the stored steps
    except Exception:
        log.exception("agent conversation of report %s failed", conversation.report.pk)
        return RunStatus.FAILED, "", UNEXPECTED
    if conversation.done:
        return RunStatus.SUCCEEDED, "", ""
    return RunStatus.SUCCEEDED, conversation.ended, ""


def investigate(report_id: int) -> AgentReport | None:
    """Run a queued investigation to its final state; None when it is not queued or running (finished)."""
    if not claim(AgentReport, report_id):
        return None
    report = AgentReport.objects.select_related("project__organization", "route", "schedule").get(pk=report_id)
    try:
        status, reason, error = converse(Conversation(report))
    except DatabaseError:
        raise
    except Exception:  # building the conversation failed (tools' specs, ...): never left running
        log.exception("agent report %s failed", report_id)
        status, reason, error = RunStatus.FAILED, "", UNEXPECTED
    report.status, report.stop_reason, report.error = status, reason[:300], error[:1000]
    report.finished_at = timezone.now()
    report.save(update_fields=["status", "stop_reason", "error", "finished_at"])
    if report.schedule_id:
        try:
            from evals.agent.schedules import after_report

            after_report(report)
        except Exception:
            log.exception("after_report of agent report %s failed", report_id)
    return report


def answer(message_id: int) -> AgentMessage | None:
    """Answer a queued follow-up question; None when it is not queued or running."""
    if not claim(AgentMessage, message_id, role="assistant"):
        return None
    message = AgentMessage.objects.select_related("report__project__organization", "report__route").get(
        pk=message_id)
    try:
        status, reason, error = converse(Conversation(message.report, message))
    except DatabaseError:
        raise
    except Exception:
        log.exception("agent answer %s failed", message_id)
        status, reason, error = RunStatus.FAILED, "", UNEXPECTED
    message.status, message.stop_reason, message.error = status, reason[:300], error[:1000]
    message.finished_at = timezone.now()
    message.save(update_fields=["status", "stop_reason", "error", "finished_at"])
    return message
