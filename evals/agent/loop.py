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
  budget refusal. The time bound also holds inside a turn: a model call (its
  retries too) and the Langfuse client get at most the time left, and it is
  checked before each tool call. At most MAX_CALLS_PER_TURN tool calls of one
  turn run (the rest are answered "not run"). Tokens and spend are the
  report's: a follow-up answer gets what the investigation and the earlier
  answers left of them (steps and time are per answer).
- What the model sends is data: its arguments are parsed once with one guard
  (malformed, too deep or too long JSON is a tool error), and everything it
  sent is cleaned of NUL characters (which PostgreSQL refuses) before it is
  stored or compared (`clean`). A database refusal of the model's data ends
  the conversation cleanly; it is not retried (a retry would buy the same turn).
- Older tool results are sent to the model shortened (their counts and trace
  ids) after KEEP_FULL_TURNS turns, so the history does not grow with every
  full result; the stored step keeps it whole.
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
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, DataError, transaction
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
MAX_CALLS_PER_TURN = 10  # tool calls of one model turn that run; the rest are answered "not run"
MAX_PARSED_ARGUMENT_CHARS = 20_000  # longer arguments are refused unparsed (the tools' own bound)
MAX_ARGUMENT_DEPTH = 32  # nesting of the arguments' JSON
KEEP_FULL_TURNS = 3  # tool results of the last turns are sent whole; older ones shortened
SHORTEN_OVER = 800  # a result's message longer than this is shortened once it is old
NOT_JSON = "the arguments are not valid JSON: send one JSON object"
NOT_STORED = "the model's output could not be stored (it is logged); what was found is kept"
NO_TOOLS = "the model did not call the report tools: does the route's model support tool calling?"
UNEXPECTED = "The agent stopped on an unexpected error (it is logged); what it found is kept."
FINISHED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED)


class Stop(Exception):
    """End the conversation cleanly, keeping what was done."""

    def __init__(self, reason: str, *, error: str = "") -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


def gateway(api_key: str, timeout: float) -> GatewayClient:
    """The gateway client of one model call (tests replace it): the call, its retries included, ends within
    `timeout` seconds (what is left of the time bound)."""
    return GatewayClient(api_key, timeout=min(120.0, timeout), max_retries=2, deadline=time.monotonic() + timeout)


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
        self.called_tools = False  # the model asked for a tool call at least once
        self.short: dict[int, str] = {}  # position in the messages -> the shortened tool result
        self.turn_starts: list[int] = []  # position of each assistant message
        steps = AgentStep.objects.filter(report=report)
        self.by_index = {s.index: view(s) for s in steps.filter(kind="tool")}
        self.next_index = (steps.aggregate(m=Max("index"))["m"] or 0) + 1
        own = steps.filter(kind="model", message=message)
        totals = own.aggregate(n=Sum("prompt_tokens"), c=Sum("completion_tokens"), s=Sum("cost"))
        self.used = Used(own.count(), (totals["n"] or 0) + (totals["c"] or 0), totals["s"] or Decimal(0))

    # Bounds ---------------------------------------------------------------

    def check_bounds(self) -> None:
        """Steps and time are this conversation's; tokens and spend the report's (investigation and answers)."""
        r, used = self.report, self.used
        of = " for the report" if self.answering else ""
        if used.steps >= r.max_steps:
            raise Stop(f"step limit reached ({r.max_steps} model turns)")
        if r.tokens_used >= r.max_tokens:
            raise Stop(f"token limit reached ({r.tokens_used} of {r.max_tokens} tokens{of})")
        self.check_time()
        if r.cost >= r.max_spend:
            raise Stop(f"spend limit reached (${r.cost:.6f} of ${r.max_spend}{of})")

    def check_time(self) -> None:
        if self.remaining() <= 0:
            raise Stop(f"time limit reached ({self.report.max_seconds} s)")

    def remaining(self) -> float:
        return self.report.max_seconds - self.elapsed()

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
        skipped: list[str] = []

        def close() -> None:
            messages.extend({"role": "tool", "tool_call_id": c, "content": interrupted()} for c in pending)
            messages.extend({"role": "tool", "tool_call_id": c, "content": prompts.not_run(MAX_CALLS_PER_TURN)}
                            for c in skipped)

        for step in AgentStep.objects.filter(report=self.report, message=self.message).order_by("index"):
            if step.kind == "model":
                close()
                calls = step.arguments if isinstance(step.arguments, list) else []
                self.turn_starts.append(len(messages))
                messages.append(assistant(step.content, calls))
                self.called_tools = self.called_tools or bool(calls)
                pending = [c["id"] for c in calls[:MAX_CALLS_PER_TURN]]
                skipped = [c["id"] for c in calls[MAX_CALLS_PER_TURN:]]
            elif step.tool_call_id in pending:
                pending.remove(step.tool_call_id)
                self.keep_short(len(messages), step.index, step.tool_name, step.result_digest, data=step.result,
                                trace_ids=list(step.trace_ids or []), error=step.error)
                messages.append({"role": "tool", "tool_call_id": step.tool_call_id, "content": step.result_digest})
        close()
        return messages

    def keep_short(self, position: int, index: int, tool: str, digest: str, *, data: Any, trace_ids: list[str],
                   error: str) -> None:
        if len(digest) > SHORTEN_OVER:
            self.short[position] = prompts.short_message(index, tool, data=data, trace_ids=trace_ids, error=error)

    def sent(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the model is sent: tool results of turns before the last KEEP_FULL_TURNS shortened."""
        if len(self.turn_starts) <= KEEP_FULL_TURNS:
            return messages
        recent = self.turn_starts[-KEEP_FULL_TURNS]
        return [m | {"content": self.short[n]} if n < recent and n in self.short else m
                for n, m in enumerate(messages)]

    def run(self) -> None:
        """Model turns until the model finishes, ends or a bound stops it (Stop)."""
        messages = self.history()
        self.check_time()
        conn = getattr(self.report.project, "langfuse_connection", None)
        timeout = min(float(settings.LANGFUSE_TIMEOUT), max(1.0, self.remaining()))
        langfuse = conn.client(timeout=timeout) if conn is not None and conn.enabled else None
        ctx = tools.ToolContext(project=self.report.project, window_start=self.report.window_start,
                                window_end=self.report.window_end, langfuse=langfuse)
        api_key = service_key(self.report.project)
        try:
            while not self.done and not self.ended:
                self.check_bounds()
                completion = self.call(api_key, self.sent(messages))
                calls = self.record_model(completion, messages)
                if not calls:
                    self.ended = self.why_ended()
                    self.no_control(clean(completion.content))
                for n, call in enumerate(calls):
                    if n >= MAX_CALLS_PER_TURN:
                        messages.append({"role": "tool", "tool_call_id": call.id,
                                         "content": prompts.not_run(MAX_CALLS_PER_TURN)})
                        continue
                    self.check_time()
                    self.run_tool(ctx, call, messages)
        finally:
            if langfuse is not None:
                langfuse.close()

    def why_ended(self) -> str:
        if not self.called_tools:
            return NO_TOOLS
        if self.answering:
            return "the model ended without calling the answer tool (its text is kept as the answer, nothing cited)"
        return "the model ended without calling finish_report (its text is kept as the summary)"

    def call(self, api_key: str, messages: list[dict[str, Any]]) -> Completion:
        r = self.report
        try:
            return gateway(api_key, max(1.0, self.remaining())).chat(
                r.route.name, messages, purpose="agent", tools=[*self.data_specs, *self.controls],
                tool_choice="auto", max_tokens=max(256, min(CALL_MAX_TOKENS, r.max_tokens - r.tokens_used)))
        except GatewayCallError as exc:
            if exc.status is None and self.remaining() <= 1.0:  # the call was cut at the time bound
                raise Stop(f"time limit reached ({r.max_seconds} s)") from None
            if exc.budget:
                raise Stop(f"the gateway refused the call: {exc}"[:300]) from None
            raise Stop(f"the model call failed: {exc}"[:300], error=str(exc)[:1000]) from None

    def record_model(self, completion: Completion, messages: list[dict[str, Any]]) -> list[ToolCall]:
        # ids and names cleaned here (they are sent back and stored); the arguments are parsed as sent (run_tool)
        calls = [ToolCall(id=clean(c.id or f"call_{self.next_index}_{n}")[:100], name=clean(c.name),
                          arguments=c.arguments) for n, c in enumerate(completion.tool_calls)]
        asked = [{"id": c.id, "name": c.name[:100],
                  "arguments": clean(c.arguments[:MAX_ARGUMENT_CHARS]) if n < MAX_CALLS_PER_TURN else ""}
                 for n, c in enumerate(calls)]
        self.called_tools = self.called_tools or bool(calls)
        content = clean(completion.content)
        cost = Decimal(str(completion.cost))
        tokens = completion.prompt_tokens + completion.completion_tokens
        self.save_step(kind="model", content=content[:MAX_CONTENT_CHARS], arguments=asked or None,
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
        self.turn_starts.append(len(messages))
        messages.append(assistant(content, asked))
        return calls

    def save_step(self, **fields: Any) -> AgentStep:
        with transaction.atomic():  # a refused write (DataError) leaves the connection usable
            step = AgentStep.objects.create(report=self.report, message=self.message, index=self.next_index,
                                            **fields)
        self.next_index += 1
        return step

    # Tools ----------------------------------------------------------------

    def run_tool(self, ctx: tools.ToolContext, call: ToolCall, messages: list[dict[str, Any]]) -> None:
        index = self.next_index
        arguments = parse_arguments(call.arguments)  # once, for the tool, the control and the record
        if call.name not in self.control_names | self.data_names:
            offered = ", ".join(sorted(self.data_names | self.control_names))
            result = tools.ToolResult(text="", data={}, trace_ids=[],
                                      error=f"unknown tool {call.name[:100]!r}; the tools are: {offered}")
        elif arguments.value is None:
            result = tools.ToolResult(text="", data={}, trace_ids=[], error=arguments.error)
        elif call.name in self.control_names:
            result = self.control(call.name, clean(arguments.value), index)
        else:
            try:  # the data tool gets them as sent: it refuses a NUL with its own message
                result = tools.call(ctx, call.name, arguments.value)
            except Exception:  # the contract says it never raises; a bug in a tool must not end the report
                log.exception("agent tool %s failed", call.name)
                result = tools.ToolResult(text="", data={}, trace_ids=[], error="the tool failed")
        text, error = clean(result.text), clean(result.error)
        digest = prompts.tool_message(index, call.name[:100], text=text, error=error)
        data = stored_data(result.data)
        trace_ids = [clean(str(t))[:200] for t in result.trace_ids[:500]]
        step = self.save_step(kind="tool", tool_call_id=call.id, tool_name=call.name[:100],
                              arguments=arguments.record, result_digest=digest, result=data, trace_ids=trace_ids,
                              truncated=result.truncated, error=error[:500])
        self.by_index[step.index] = view(step)
        self.keep_short(len(messages), step.index, step.tool_name, digest, data=data, trace_ids=trace_ids,
                        error=step.error)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": digest})

    def control(self, name: str, arguments: dict[str, Any], index: int) -> tools.ToolResult:
        if self.done:
            return tools.ToolResult(text="", data={}, trace_ids=[], error="already finished")
        if name == "record_finding":
            return self.record_finding(arguments)
        if name == "finish_report":
            summary = arguments.get("summary")
            if not isinstance(summary, str):
                return tools.ToolResult(text="", data={}, trace_ids=[], error="'summary' must be a string")
            self.report.summary, self.done = summary.strip()[:4000], True
            with transaction.atomic():
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
        with transaction.atomic():
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
        with transaction.atomic():
            r.save(update_fields=["findings_dropped", "dropped"])

    def record_answer(self, arguments: dict[str, Any]) -> tools.ToolResult:
        message = self.message
        assert message is not None
        text = arguments.get("text")
        if not isinstance(text, str) or not text.strip():
            return tools.ToolResult(text="", data={}, trace_ids=[], error="'text' must be a non-empty string")
        kept, refused = check_citations(arguments.get("evidence"), self.by_index)
        message.content, message.evidence, message.evidence_dropped = text.strip()[:8000], kept, len(refused)
        with transaction.atomic():
            message.save(update_fields=["content", "evidence", "evidence_dropped"])
        self.done = True
        return outcome({"answered": True, "evidence_kept": len(kept), "evidence_refused": refused[:20]})

    def no_control(self, content: str) -> None:
        """The model ended with text only: that text is the summary (or the answer), nothing cited."""
        text = content.strip()
        with transaction.atomic():
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


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(value: Any) -> Any:
    """What the model sent, fit to store and compare: every NUL (PostgreSQL refuses it in text and jsonb)
    and every lone surrogate (JSON's "\\ud800": UTF-8 cannot encode it) replaced by U+FFFD, in strings and
    in keys, at any depth. The one sanitiser of the loop."""
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


@dataclass
class Arguments:
    """A tool call's arguments, parsed once: `value` the object as sent (None when refused, `error` says why);
    `record` what the step stores (parsed when JSON and short, else the bounded text; cleaned)."""

    value: dict[str, Any] | None
    error: str
    record: Any


def parse_arguments(raw: str | None) -> Arguments:
    text = raw if isinstance(raw, str) else ""
    if not text.strip():
        return Arguments({}, "", None)
    bounded = clean(text[:MAX_ARGUMENT_CHARS])
    if len(text) > MAX_PARSED_ARGUMENT_CHARS:
        return Arguments(None, f"the arguments are longer than {MAX_PARSED_ARGUMENT_CHARS} characters", bounded)
    try:
        value = json.loads(text, parse_constant=not_a_number, parse_float=finite)
    except (ValueError, RecursionError):
        return Arguments(None, NOT_JSON, bounded)
    if nesting(value) > MAX_ARGUMENT_DEPTH:
        return Arguments(None, f"the arguments are nested more than {MAX_ARGUMENT_DEPTH} levels deep", bounded)
    record = clean(value) if len(text) <= MAX_ARGUMENT_CHARS else bounded
    if not isinstance(value, dict):
        return Arguments(None, "the arguments are not a JSON object: send one JSON object", record)
    return Arguments(value, "", record)


def not_a_number(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def finite(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{literal[:20]} is not a finite number")
    return value


def nesting(value: Any) -> int:
    """How deeply `value` nests lists and objects (without recursion; stops past MAX_ARGUMENT_DEPTH)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_ARGUMENT_DEPTH:
                break
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def stored_data(data: Any) -> Any:
    """A tool's structured result as the step stores it: JSON, cleaned, bounded."""
    try:
        text = json.dumps(data, default=str)
        if len(text) > MAX_RESULT_BYTES:
            return {"truncated": True}
        return clean(json.loads(text))
    except (ValueError, RecursionError):
        return {"truncated": True}


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
    except DataError:  # the database refused what the model sent: a retry would buy the same turn again
        log.exception("agent conversation of report %s: the model's output was refused", conversation.report.pk)
        did = conversation.used.steps > 0
        return (RunStatus.PARTIAL if did else RunStatus.FAILED), NOT_STORED, "" if did else NOT_STORED
    except DatabaseError:
        raise  # the task retries; the retry resumes from the stored steps
    except Exception:
        log.exception("agent conversation of report %s failed", conversation.report.pk)
        return RunStatus.FAILED, "", UNEXPECTED
    if conversation.done:
        return RunStatus.SUCCEEDED, "", ""
    return RunStatus.PARTIAL, conversation.ended, ""  # the model did not finish its report (or answer)


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
