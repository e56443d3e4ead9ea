"""The agent benchmark's planted data and its scoring.

`plan()` draws a few hundred traces of a support assistant with known failure
patterns among normal traffic; `ingest()` sends them to a Langfuse project
through its batch ingestion API (as the Langfuse SDK sends them: traces,
generations, tool observations, scores), and `usage_events()` gives the
portal's usage records of the same requests (what the gateway's plugin
reports). `score()` matches an agent's findings with the patterns.

The patterns (each a set of trace ids):
- wrong_language: route `support-de` answers a third of its German questions in English
  (evaluator `language_match` = 0 on them, 1 elsewhere);
- tool_error_long_input: the `search_kb` tool fails (level ERROR) whenever the question is
  longer than 2,000 characters, on every route;
- refusal_billing: every (short) question on the topic `billing` is refused ("I can't help
  with that"), helpfulness 1.
The patterns are disjoint. Normal traffic has helpfulness 3..5 with a few decoys
(helpfulness 1 on other topics), so that a careless reading of the data cites traces of
no pattern.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

ROUTES = {"support-en": "en", "support-de": "de", "support-fr": "fr"}
TOPICS = ["account", "shipping", "returns", "billing", "product"]
LONG_INPUT = 2000
PATTERNS = ("wrong_language", "tool_error_long_input", "refusal_billing")

QUESTIONS = {
    "en": "How do I change the {topic} details of my order {n}?",
    "de": "Wie ändere ich die Angaben zu {topic} meiner Bestellung {n}?",
    "fr": "Comment modifier les informations {topic} de ma commande {n} ?",
}
ANSWERS = {
    "en": "You can change the {topic} details in your account under Orders > {n} > Edit.",
    "de": "Sie können die Angaben zu {topic} in Ihrem Konto unter Bestellungen > {n} > Bearbeiten ändern.",
    "fr": "Vous pouvez modifier les informations {topic} dans votre compte sous Commandes > {n} > Modifier.",
}
REFUSALS = {
    "en": "I'm sorry, but I can't help with that.",
    "de": "Es tut mir leid, dabei kann ich nicht helfen.",
    "fr": "Je suis désolé, je ne peux pas vous aider avec cela.",
}


@dataclass
class PlantedTrace:
    id: str
    timestamp: dt.datetime
    route: str
    topic: str
    language: str
    question: str
    answer: str
    helpfulness: float
    language_match: float
    tool_error: bool
    patterns: set[str] = field(default_factory=set)
    latency_ms: float = 800.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    user: str = ""


@dataclass
class Plan:
    traces: list[PlantedTrace]

    def of(self, pattern: str) -> set[str]:
        return {t.id for t in self.traces if pattern in t.patterns}

    @property
    def patterns(self) -> dict[str, set[str]]:
        return {p: self.of(p) for p in PATTERNS}


def plan(*, total: int = 300, seed: int = 12, end: dt.datetime | None = None, hours: float = 48) -> Plan:
    """`total` traces spread over the `hours` before `end`, with the three patterns."""
    rng = random.Random(seed)
    end = end or dt.datetime.now(dt.UTC)
    traces: list[PlantedTrace] = []
    routes = rng.choices(list(ROUTES), weights=[5, 3, 2], k=total)
    for i, route in enumerate(routes):
        lang = ROUTES[route]
        topic = rng.choices(TOPICS, weights=[3, 3, 2, 1, 3])[0]
        long_input = rng.random() < 0.09
        question = QUESTIONS[lang].format(topic=topic, n=1000 + i)
        if long_input:  # a pasted e-mail thread or log above the question
            question = ("> " + "previous message quoted in full, " * 80 + "\n") + question
        trace = PlantedTrace(
            id=uuid.UUID(int=rng.getrandbits(128)).hex, route=route, topic=topic, language=lang,
            timestamp=end - dt.timedelta(hours=hours) + dt.timedelta(hours=hours * (i + 0.5) / total),
            question=question, answer=ANSWERS[lang].format(topic=topic, n=1000 + i),
            helpfulness=float(rng.choice([3, 4, 4, 5, 5])), language_match=1.0, tool_error=False,
            latency_ms=rng.uniform(500, 1500), user=f"user-{rng.randrange(60)}")
        if len(question) > LONG_INPUT:  # the patterns are disjoint: a failed tool call is that pattern's
            trace.tool_error = True
            trace.helpfulness = min(trace.helpfulness, 2.0)
            trace.answer = "I could not look that up right now. " + trace.answer
            trace.latency_ms += 2500
            trace.patterns.add("tool_error_long_input")
        elif topic == "billing":
            trace.answer, trace.helpfulness = REFUSALS[lang], 1.0
            trace.patterns.add("refusal_billing")
        elif route == "support-de" and rng.random() < 0.35:
            trace.answer = ANSWERS["en"].format(topic=topic, n=1000 + i)
            trace.language_match = 0.0
            trace.patterns.add("wrong_language")
        traces.append(trace)
    # decoys: low helpfulness on other topics, which are no pattern
    for trace in rng.sample([t for t in traces if not t.patterns], 5):
        trace.helpfulness = 1.0
    for trace in traces:
        trace.prompt_tokens = 40 + len(trace.question) // 4
        trace.completion_tokens = 20 + len(trace.answer) // 4
        trace.cost = round(trace.prompt_tokens * 0.15e-6 + trace.completion_tokens * 0.6e-6, 9)
    return Plan(traces)


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def events(trace: PlantedTrace) -> list[dict[str, Any]]:
    """The ingestion events of one trace, as the Langfuse Python SDK would send them."""
    start = trace.timestamp
    end = start + dt.timedelta(milliseconds=trace.latency_ms)
    tool_start = start + dt.timedelta(milliseconds=50)
    tool_end = tool_start + dt.timedelta(milliseconds=2000 if trace.tool_error else 120)
    gen_start = tool_end + dt.timedelta(milliseconds=10)

    def event(kind: str, body: dict[str, Any], when: dt.datetime) -> dict[str, Any]:
        return {"id": uuid.uuid4().hex, "type": kind, "timestamp": _time(when), "body": body}

    tool: dict[str, Any] = {
        "id": uuid.uuid4().hex, "traceId": trace.id, "type": "TOOL", "name": "search_kb",
        "startTime": _time(tool_start), "endTime": _time(tool_end), "input": {"query": trace.question},
        "environment": "production"}
    if trace.tool_error:
        tool |= {"level": "ERROR", "statusMessage": "search_kb: query too long (max 2000 characters)",
                 "output": None}
    else:
        tool |= {"level": "DEFAULT", "output": {"hits": 3, "top": f"kb/{trace.topic}/how-to"}}
    events_ = [
        event("trace-create", {
            "id": trace.id, "timestamp": _time(start), "name": "support-chat", "userId": trace.user,
            "sessionId": f"session-{trace.user}", "input": {"role": "user", "content": trace.question},
            "output": {"role": "assistant", "content": trace.answer}, "environment": "production",
            "metadata": {"route": trace.route, "topic": trace.topic, "language": trace.language},
            "tags": [f"route:{trace.route}", f"topic:{trace.topic}"]}, start),
        event("observation-create", tool, tool_start),
        event("generation-create", {
            "id": uuid.uuid4().hex, "traceId": trace.id, "name": "answer", "model": trace.route,
            "startTime": _time(gen_start), "endTime": _time(end), "completionStartTime": _time(gen_start),
            "input": [{"role": "system", "content": f"Answer in {trace.language}."},
                      {"role": "user", "content": trace.question}],
            "output": {"role": "assistant", "content": trace.answer}, "environment": "production",
            "usageDetails": {"input": trace.prompt_tokens, "output": trace.completion_tokens},
            "costDetails": {"total": trace.cost}}, gen_start),
    ]
    for name, value in (("helpfulness", trace.helpfulness), ("language_match", trace.language_match)):
        events_.append(event("score-create", {
            "id": uuid.uuid4().hex, "traceId": trace.id, "name": name, "value": value, "dataType": "NUMERIC",
            "source": "API", "environment": "production"}, end))
    return events_


def ingest(host: str, public_key: str, secret_key: str, planted: Plan, batch: int = 100) -> int:
    """Send every trace through `POST /api/public/ingestion`; returns the events accepted."""
    auth = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    all_events = [e for t in planted.traces for e in events(t)]
    accepted = 0
    with httpx.Client(base_url=host, timeout=30, headers={"Authorization": f"Basic {auth}"}) as client:
        for i in range(0, len(all_events), batch):
            response = client.post("/api/public/ingestion", content=json.dumps({"batch": all_events[i:i + batch]}),
                                   headers={"Content-Type": "application/json"})
            response.raise_for_status()
            body = response.json()
            if body.get("errors"):
                raise RuntimeError(f"ingestion refused events: {body['errors'][:3]}")
            accepted += len(body.get("successes", []))
    return accepted


def usage_events(planted: Plan, *, org: int, team: int, project: int, key_id: int, owner: str,
                 org_slug: str) -> list[dict[str, Any]]:
    """The usage events the gateway's plugin would have reported for the same requests."""
    return [{
        "request_id": f"bench-{t.id}", "ts": t.timestamp.timestamp(), "org": org, "team": team,
        "project": project, "key_id": key_id, "owner": owner, "route": t.route, "group": f"{org_slug}/{t.route}",
        "deployment": f"{t.route}-0", "provider_model": "gpt-4o-mini", "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens, "cost_nano": int(round(t.cost * 1e9)),
        "latency_ms": t.latency_ms, "status": "success", "status_code": 200, "error_class": "",
        "trace_id": t.id} for t in planted.traces]


# Scoring ----------------------------------------------------------------------


@dataclass
class Match:
    title: str
    pattern: str | None  # the pattern most of its cited traces belong to, if any
    cited: int
    correct: int  # cited traces that belong to that pattern


def match(trace_ids: list[str], patterns: dict[str, set[str]]) -> tuple[str | None, int]:
    """(pattern, cited traces in it): a finding matches the pattern that more than half of
    its cited traces belong to."""
    cited = set(trace_ids)
    if not cited:
        return None, 0
    best = max(patterns, key=lambda p: len(cited & patterns[p]))
    hits = len(cited & patterns[best])
    return (best, hits) if hits * 2 > len(cited) else (None, 0)


def score(findings: list[dict[str, Any]], patterns: dict[str, set[str]]) -> dict[str, Any]:
    """Patterns found, and the precision of the cited traces over all kept findings."""
    matches = []
    for f in findings:
        pattern, hits = match(list(f.get("trace_ids") or []), patterns)
        matches.append(Match(f.get("title", ""), pattern, len(set(f.get("trace_ids") or [])), hits))
    found = sorted({m.pattern for m in matches if m.pattern})
    cited = sum(m.cited for m in matches)
    correct = sum(m.correct for m in matches)
    return {"found": found, "found_count": len(found), "planted": len(patterns), "cited": cited,
            "correct": correct, "precision": correct / cited if cited else None,
            "matches": [m.__dict__ for m in matches]}
