"""The agent benchmark's scripted investigator: the model behind the stand-in
route (tests/llm_standin.py) when no real provider is given.

It plays the careful analyst with OpenAI-style tool calls, and decides each
turn from what the tools returned so far (the conversation the loop sends it):

1. the overview: scores per route (`score_stats`) and requests per route (`portal_usage`);
2. for the evaluator that one route fails far more often than the best route, the route's
   failing traces (`search_traces` by route and score range) and a comparison of the two
   routes (`compare`); traces with an error (`search_traces errors_only`); the least helpful
   traces (`search_traces` helpfulness <= 1);
3. reads a few of them (`read_trace`): the failing observation of an error trace, the tags of
   the least helpful ones;
4. the least helpful traces' most common `topic:` tag, searched on its own (`search_traces`
   tags and helpfulness <= 1), so that the decoys of other topics are not cited;
5. records a finding per pattern it saw, citing the ids and the `matched` count of the search
   that shows it, then two findings the evidence check must drop (a fabricated trace id; a
   count three times what the search matched), and finishes the report.
A follow-up question (the request offers the `answer` tool) gets a fresh search and an answer
citing three of its traces and one fabricated id, which the evidence check must drop.

It knows the playbook, not the answer: the route, evaluator and topic it reports are the
ones the tools' data point to. It measures the mechanics (tools, loop, evidence check),
never a model's judgement.
"""

from __future__ import annotations

import collections
import json
import threading
from dataclasses import dataclass
from typing import Any

from tests import agent_script as script

FABRICATED_ID = "f" * 32  # a trace id in no result: the evidence check must drop the finding citing it


@dataclass
class Result:
    label: str
    name: str
    arguments: dict[str, Any]
    step: int | None
    data: Any
    error: str


Call = tuple[str, str, dict[str, Any]]  # (label, tool, arguments)


def call(label: str, name: str, **arguments: Any) -> Call:
    return label, name, arguments


def turn(*asked: Call, content: str = "") -> dict[str, Any]:
    """An assistant message asking for these tool calls (tests/agent_script.py builds it); each call's id
    carries its label, so that the next turn finds which result answers which question."""
    message = script.calls(*((name, args) for _, name, args in asked), content=content or None)
    for tool_call, (label, _, _) in zip(message["tool_calls"], asked, strict=True):
        tool_call["id"] = f"call_{label}_{tool_call['id'].removeprefix('call_')}"
    return message


def results(messages: list[dict[str, Any]]) -> dict[str, Result]:
    """The tool results so far, by the label of the call that asked for them."""
    asked: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for m in messages:
        for c in m.get("tool_calls") or [] if m.get("role") == "assistant" else []:
            label = c["id"].split("_")[1] if c.get("id", "").startswith("call_") else c.get("id", "")
            try:
                args = json.loads(c["function"]["arguments"] or "{}")
            except ValueError:
                args = {}
            asked[c["id"]] = (label, c["function"]["name"], args)
    out: dict[str, Result] = {}
    for m in messages:
        if m.get("role") != "tool" or m.get("tool_call_id") not in asked:
            continue
        label, name, args = asked[m["tool_call_id"]]
        try:
            framed = json.loads(m.get("content") or "{}")
        except ValueError:
            framed = {}
        data = framed.get("data") if isinstance(framed, dict) else None
        error = str(framed.get("error") or "") if isinstance(framed, dict) else "unreadable result"
        if isinstance(data, dict) and data.get("error"):
            error = error or str(data["error"])
        out[label] = Result(label, name, args, framed.get("step") if isinstance(framed, dict) else None, data, error)
    return out


def rows(result: Result | None) -> list[dict[str, Any]]:
    if result is None or result.error or not isinstance(result.data, dict):
        return []
    return [r for r in result.data.get("rows") or [] if isinstance(r, dict)]


def ids(result: Result | None, limit: int = 50) -> list[str]:
    return [str(r["id"]) for r in rows(result) if r.get("id")][:limit]


def outlier(score_rows: list[dict[str, Any]]) -> tuple[str, str, str, float] | None:
    """(evaluator, worst route, best route, worst pass rate) where one route fails an evaluator at least
    twice as often as the best route and by 10 points or more (the strongest such contrast)."""
    best: tuple[float, str, str, str, float] | None = None
    by_evaluator: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in score_rows:
        if isinstance(r.get("pass_rate"), int | float) and isinstance(r.get("route"), str):
            by_evaluator[str(r.get("evaluator"))].append(r)
    for evaluator, group in by_evaluator.items():
        if len(group) < 2:
            continue
        group.sort(key=lambda r: r["pass_rate"])
        worst_fails, best_fails = 1 - group[0]["pass_rate"], 1 - group[-1]["pass_rate"]
        ratio = worst_fails / max(best_fails, 0.02)
        if worst_fails - best_fails >= 0.1 and ratio >= 2 and (best is None or ratio > best[0]):
            best = (ratio, evaluator, group[0]["route"], group[-1]["route"], group[0]["pass_rate"])
    return best[1:] if best else None


def error_observation(result: Result | None) -> dict[str, Any]:
    if result is None or not isinstance(result.data, dict):
        return {}
    for o in result.data.get("observations") or []:
        if isinstance(o, dict) and o.get("level") == "ERROR":
            return o
    return {}


def tags_of(result: Result | None) -> list[str]:
    if result is None or not isinstance(result.data, dict):
        return []
    tags = (result.data.get("trace") or {}).get("tags")
    if isinstance(tags, str):  # read_trace clips fields to text
        try:
            tags = json.loads(tags)
        except ValueError:
            return []
    return [t for t in tags or [] if isinstance(t, str)]


NOTE = "outlier"


def noted_outlier(messages: list[dict[str, Any]]) -> tuple[str, str, str, float] | None:
    """The outlier this investigator wrote in its own earlier message (assistant messages are never shortened)."""
    for m in messages:
        text = str(m.get("content") or "") if m.get("role") == "assistant" else ""
        if f'{{"{NOTE}": ' in text:
            try:
                evaluator, worst, best, rate = json.loads(text[text.index(f'{{"{NOTE}": '):])[NOTE]
                return str(evaluator), str(worst), str(best), float(rate)
            except (ValueError, TypeError):
                return None
    return None


class Investigator:
    """`answer(body)` for LLMStandin: the next assistant message of an investigation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.turns = 0

    def answer(self, body: dict[str, Any]) -> dict[str, Any] | str:
        with self.lock:
            self.turns += 1
        messages = body.get("messages") or []
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4  # about a real tokenizer's
        done = results(messages)
        answering = any((t.get("function") or {}).get("name") == "answer" for t in body.get("tools") or [])
        reply = self.follow_up(done) if answering else self.next(done, messages)
        if isinstance(reply, dict):
            reply["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": 40 + 30 * len(reply["tool_calls"])}
        return reply

    def next(self, done: dict[str, Result], messages: list[dict[str, Any]]) -> dict[str, Any]:
        if "scores" not in done:
            return turn(call("scores", "score_stats", group_by="route"), call("usage", "portal_usage", group_by="route"),
                        content="First the scores and the requests per route.")
        if "errors" not in done:
            calls = [call("errors", "search_traces", errors_only=True, limit=50),
                     call("unhelpful", "search_traces", scores=[{"evaluator": "helpfulness", "max": 1}], limit=50)]
            found = outlier(rows(done["scores"]))
            note = ""
            if found:
                evaluator, worst, best, rate = found
                calls += [call("routefail", "search_traces", route=worst,
                               scores=[{"evaluator": evaluator, "max": 0.5}], limit=50),
                          call("compare", "compare", measure="score", evaluator=evaluator, a={"route": best},
                               b={"route": worst})]
                # an analyst writes down what it concluded: older tool results reach it shortened later
                note = " " + json.dumps({NOTE: [evaluator, worst, best, rate]})
            return turn(*calls, content="Following the outlier route, the errors and the least helpful answers."
                        + note)
        if "readerr0" not in done and "readlow0" not in done:
            reads = [call(f"readerr{i}", "read_trace", trace_id=t) for i, t in enumerate(ids(done["errors"], 2))]
            reads += [call(f"readlow{i}", "read_trace", trace_id=t) for i, t in enumerate(ids(done["unhelpful"], 3))]
            if "routefail" in done and ids(done["routefail"]):
                reads.append(call("readroute0", "read_trace", trace_id=ids(done["routefail"])[0]))
            if reads:
                return turn(*reads, content="Reading a few of them.")
        topic = self.topic(done)
        if topic and "topic" not in done:
            return turn(call("topic", "search_traces", tags=[topic], scores=[{"evaluator": "helpfulness", "max": 1}],
                             limit=50), content=f"The least helpful answers share the tag {topic}.")
        if "finding0" not in done and "finish" not in done:
            findings = self.findings(done, topic, messages)
            if findings:
                return turn(*findings, content="Recording what the data shows.")
        return turn(call("finish", "finish_report", summary=self.summary(done)), content="Done.")

    def follow_up(self, done: dict[str, Result]) -> dict[str, Any]:
        """A follow-up question (the bench asks which traces show the tool errors): a fresh search, then the
        answer citing three of its traces and, for the evidence check to drop, a fabricated one."""
        if "qerrors" not in done:
            return turn(call("qerrors", "search_traces", errors_only=True, limit=10),
                        content="Searching the traces with an error again for this answer.")
        found = done["qerrors"]
        cited = ids(found, 3)
        if found.step is None or not cited:
            return turn(call("answer", "answer", text="The search returned no trace with an error.", evidence=[]))
        matched = found.data.get("matched") if isinstance(found.data, dict) else None
        evidence = [{"trace_id": t, "steps": [found.step]} for t in [*cited, FABRICATED_ID]]
        return turn(call("answer", "answer", evidence=evidence,
                         text=f"{matched} traces of the window have an error; three of them: {', '.join(cited)}."))

    def topic(self, done: dict[str, Result]) -> str | None:
        tags = [t for label, r in done.items() if label.startswith("readlow") for t in tags_of(r)
                if t.startswith("topic:")]
        common = collections.Counter(tags).most_common(1)
        return common[0][0] if common and common[0][1] >= 2 else None

    def findings(self, done: dict[str, Result], topic: str | None, messages: list[dict[str, Any]]) -> list[Call]:
        out: list[Call] = []

        def finding(result: Result | None, reads: list[str], **fields: Any) -> None:
            cited = ids(result)
            if result is None or not cited or result.step is None:
                return
            steps = [result.step] + [done[r].step for r in reads if r in done and done[r].step is not None
                                     and not done[r].error]
            count = int(result.data.get("matched") or len(cited))
            out.append(call(f"finding{len(out)}", "record_finding", count=count, trace_ids=cited, steps=steps,
                            **fields))

        found = (outlier(rows(done.get("scores"))) if "scores" in done else None) or noted_outlier(messages)
        if found and "routefail" in done:
            evaluator, worst, best, rate = found
            finding(done["routefail"], ["readroute0"], title=f"{evaluator} fails on route {worst}",
                    problem=f"On route {worst} the evaluator {evaluator} passes {rate:.0%} of the traces against "
                            f"{best}'s; the failing answers are not in the question's language.",
                    change_kind="prompt", change=f"Tell {worst}'s system prompt to answer in the user's language, "
                                                 "and add a language check (guardrail) before the answer is sent.")
        failing = error_observation(done.get("readerr0")) or error_observation(done.get("readerr1"))
        if failing:
            tool = str(failing.get("name") or "a tool")
            message = str(failing.get("statusMessage") or "")[:200]
            finding(done.get("errors"), ["readerr0", "readerr1"], title=f"{tool} fails with an error",
                    problem=f"The {tool} observation ends with level ERROR ({message}); the traces read have very "
                            "long questions (quoted e-mail threads) and the answer says it could not look it up.",
                    change_kind="tool", change=f"Truncate or summarise the query before calling {tool} (it refuses "
                                               "more than its limit), and retry with the question alone.")
        if topic and "topic" in done:
            finding(done["topic"], ["readlow0", "readlow1", "readlow2"], title=f"Refusals on {topic}",
                    problem=f"The traces tagged {topic} are refused (\"I can't help with that\"), helpfulness 1.",
                    change_kind="prompt", change=f"Allow {topic.split(':', 1)[-1]} questions in the system prompt "
                                                 "and route them to the billing knowledge base.")
        source = done.get("errors") if ids(done.get("errors")) else done.get("unhelpful")
        if source is not None and ids(source) and source.step is not None:
            # the evidence check must drop these two
            out.append(call(f"finding{len(out)}", "record_finding", title="Fabricated evidence (must be dropped)",
                            problem="Cites a trace id that no tool returned.", count=1, change_kind="prompt",
                            change="None: this finding tests the evidence check.", steps=[source.step],
                            trace_ids=[*ids(source, 2), FABRICATED_ID]))
            overclaim = int(source.data.get("matched") or len(ids(source))) * 3
            out.append(call(f"finding{len(out)}", "record_finding", title="Overclaimed count (must be dropped)",
                            problem="Claims three times the traces its search matched.", count=overclaim,
                            change_kind="tool", change="None: this finding tests the evidence check.",
                            steps=[source.step], trace_ids=ids(source, 5)))
        return out

    def summary(self, done: dict[str, Result]) -> str:
        kept = [r for label, r in done.items() if label.startswith("finding") and isinstance(r.data, dict)
                and r.data.get("kept")]
        return (f"{len(kept)} findings recorded from {sum(1 for r in done.values() if r.name != 'record_finding')} "
                "tool calls (scripted stand-in investigator).")
