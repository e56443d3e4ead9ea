"""The steps of `manage.py smoke`: one real journey through the running system, as a client makes it.

A short-lived key (KEY_LIFETIME, a budget of MAX_BUDGET, one route; issued and revoked in the audit log
as "manage.py smoke") calls the route through the gateway without and with streaming; the usage
consumer must have written both requests' records, the project's Langfuse (when it has one) must have
both traces; the key is revoked and must then be refused (401). The key is revoked whatever fails
(and expires anyway). Each step reports its time."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import openai
from django.conf import settings
from django.utils import timezone

from gateway.models import ModelRoute, UsageRecord, VirtualKey
from portal.access import Actor, system_actor
from portal.logs import request_id_headers
from portal.models import Organization, Project
from portal.ops.checks import failure

KEY_LIFETIME = dt.timedelta(minutes=10)
MAX_BUDGET = Decimal("0.50")
MAX_TOKENS = 16
CALL_TIMEOUT = 30.0
USAGE_TIMEOUT = 30.0
TRACE_TIMEOUT = 60.0
REVOKE_TIMEOUT = 10.0
PROMPT = "Reply with the single word: pong."


class SmokeError(Exception):
    """A step failed: what was seen and what to do."""

    def __init__(self, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'}  {self.name:<18} {self.seconds:7.3f} s  {self.detail}"
        return text if self.ok or not self.fix else f"{text}\n      -> {self.fix}"


@dataclass
class Target:
    org: Organization
    project: Project
    route: ModelRoute
    gateway: str


@dataclass
class Smoke:
    target: Target
    report: Callable[[Step], None] = lambda step: None
    steps: list[Step] = field(default_factory=list)
    key: VirtualKey | None = None
    plaintext: str = ""
    request_ids: list[str] = field(default_factory=list)

    @property
    def actor(self) -> Actor:
        return system_actor(self.target.org, "manage.py smoke")

    def step(self, name: str, action: Callable[[], str]) -> bool:
        start = time.monotonic()
        try:
            detail = action()
        except SmokeError as exc:
            result = Step(name, False, time.monotonic() - start, exc.detail, exc.fix)
        except Exception as exc:  # noqa: BLE001 - a failed step is the answer, never a traceback
            result = Step(name, False, time.monotonic() - start, failure(exc))
        else:
            result = Step(name, True, time.monotonic() - start, detail)
        self.steps.append(result)
        self.report(result)
        return result.ok

    # The steps -----------------------------------------------------------------------------------------

    def issue(self) -> str:
        from django.core.exceptions import ValidationError

        from gateway.backends import GatewayError
        from gateway.services import keys as key_services

        t = self.target
        try:
            issued = key_services.key_create(actor=self.actor, data={
                "name": f"smoke: {t.route.name}"[:100], "team": t.project.team, "project": t.project,
                "allowed_routes": [t.route], "max_budget": MAX_BUDGET, "expires_at": timezone.now() + KEY_LIFETIME,
                "metadata": {"purpose": "smoke"}})
        except ValidationError as exc:
            raise SmokeError(f"the key was refused: {'; '.join(exc.messages)}",
                             "pick another --route (one the project's team may use)") from None
        except GatewayError as exc:
            raise SmokeError(f"the key could not be pushed to the gateway ({failure(exc)})",
                             "run `python manage.py doctor`: Redis and the sync queue") from None
        self.key, self.plaintext = issued.key, issued.plaintext
        return (f"key {issued.key.key_prefix}... for {t.org.slug}/{t.project.name}, route '{t.route.name}', "
                f"${MAX_BUDGET} budget, expires in {KEY_LIFETIME.seconds // 60} min")

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.target.gateway}/v1", api_key=self.plaintext, max_retries=0,
                             timeout=CALL_TIMEOUT, default_headers=request_id_headers())

    @contextlib.contextmanager
    def gateway_errors(self) -> Iterator[None]:
        """The gateway's refusals and an unreachable gateway as a failed step with what to do."""
        try:
            yield
        except openai.APIStatusError as exc:
            raise SmokeError(f"{exc.status_code} from {self.target.gateway}: {error_message(exc)}",
                             "run `python manage.py doctor`") from None
        except openai.APIConnectionError as exc:
            raise SmokeError(f"{self.target.gateway} cannot be reached ({failure(exc)})",
                             "start the gateway, or pass --gateway URL") from None

    def call(self) -> str:
        with self.gateway_errors():
            raw = self.client().chat.completions.with_raw_response.create(
                model=self.target.route.name, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS)
        reply = raw.parse()
        self.request_ids.append(raw.headers.get("x-request-id", ""))
        text = (reply.choices[0].message.content or "").strip() if reply.choices else ""
        if not text:
            raise SmokeError("the answer had no text")
        tokens = reply.usage.total_tokens if reply.usage else 0
        return f"{text[:60]!r}, {tokens} tokens"

    def stream(self) -> str:
        parts: list[str] = []
        first: float | None = None
        start = time.monotonic()
        with self.gateway_errors():
            chunks = self.client().chat.completions.create(
                model=self.target.route.name, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS,
                stream=True)
            for chunk in chunks:
                for choice in chunk.choices:
                    if choice.delta.content:
                        first = first or time.monotonic() - start
                        parts.append(choice.delta.content)
        text = "".join(parts).strip()
        if not text:
            raise SmokeError("the stream had no text")
        return f"{text[:60]!r} in {len(parts)} chunk(s), first after {first or 0:.3f} s"

    def usage(self) -> str:
        assert self.key is not None
        key_id, served = self.key.pk, sum(1 for s in self.steps if s.name.startswith("call") and s.ok)
        rows = wait_for(lambda: list(UsageRecord.objects.filter(key_id=key_id).order_by("created_at")),
                        lambda rows: len(rows) >= served, USAGE_TIMEOUT)
        if len(rows) < served:
            raise SmokeError(f"{len(rows)} of {served} usage records after {USAGE_TIMEOUT:g} s",
                             "a worker must serve the 'usage' queue (`celery -A portal worker -Q usage`); "
                             "run `python manage.py doctor`")
        cost = sum((r.cost for r in rows), Decimal(0))
        return f"{len(rows)} records written by the consumer, ${cost:.6f}, statuses {[r.status for r in rows]}"

    def langfuse(self) -> str | None:
        """None when the project has no Langfuse (the step is skipped)."""
        from evals.langfuse_client import LangfuseClient, LangfuseError
        from evals.models import LangfuseConnection

        conn = LangfuseConnection.objects.filter(project=self.target.project, enabled=True).first()
        if conn is None:
            return None
        assert self.key is not None
        trace_ids = [t for t in UsageRecord.objects.filter(key_id=self.key.pk).values_list("trace_id", flat=True) if t]
        if not trace_ids:
            raise SmokeError("the usage records name no trace", "check the project's Langfuse connection (doctor)")
        found: set[str] = set()
        last: list[str] = []  # the last error other than "not there yet", shown if the traces never come
        with LangfuseClient(conn.host, conn.public_key, conn.secret_key(), timeout=5, max_retries=0) as client:
            def look() -> set[str]:
                for trace_id in trace_ids:
                    if trace_id not in found:
                        try:
                            client.trace(trace_id)
                            found.add(trace_id)
                        except LangfuseError as exc:
                            if exc.status == 404:  # not ingested yet: Langfuse lists a trace late
                                continue
                            if exc.permanent:  # keys refused, outbound policy, not Langfuse: waiting won't help
                                raise SmokeError(str(exc), "check the project's Langfuse connection "
                                                 "(`python manage.py doctor`)") from None
                            last[:] = [str(exc)]
                return found

            wait_for(look, lambda f: len(f) == len(trace_ids), TRACE_TIMEOUT, interval=1.0)
        if len(found) < len(trace_ids):
            seen = f" (last error: {last[0]})" if last else ""
            raise SmokeError(f"{len(found)} of {len(trace_ids)} traces in {conn.host} after {TRACE_TIMEOUT:g} s{seen}",
                             "check the project's Langfuse keys (doctor) and the gateway's log for the exporter")
        return f"{len(found)} traces in {conn.host}"

    def revoke(self) -> str:
        from gateway.services import keys as key_services

        if self.key is None:
            return "no key was issued"
        key_services.key_revoke(actor=self.actor, key=self.key)
        return f"key {self.key.key_prefix}... revoked (audited)"

    def refused(self) -> str:
        def status() -> int:
            try:
                self.client().chat.completions.create(model=self.target.route.name, max_tokens=MAX_TOKENS,
                                                      messages=[{"role": "user", "content": PROMPT}])
            except openai.APIStatusError as exc:
                return exc.status_code
            return 200

        try:
            code = wait_for(status, lambda c: c == 401, REVOKE_TIMEOUT, interval=0.1)
        except openai.APIConnectionError as exc:
            raise SmokeError(f"not checked: {self.target.gateway} cannot be reached ({failure(exc)})",
                             "start the gateway, or pass --gateway URL") from None
        if code != 401:
            raise SmokeError(f"the revoked key still answers {code} after {REVOKE_TIMEOUT:g} s",
                             "the gateway does not see revocations: run `python manage.py doctor` (drift, Redis)")
        return "401 for the revoked key"

    def run(self) -> bool:
        # The OpenAI SDK imports its resources lazily (seconds on a busy host): before the clock runs, so that
        # each step's time is the gateway's.
        _ = openai.OpenAI(base_url=f"{self.target.gateway}/v1", api_key="-").chat.completions.with_raw_response
        if not self.step("issue key", self.issue):
            return False
        try:
            called = self.step("call", self.call)
            streamed = self.step("call (stream)", self.stream)
            if (called or streamed) and self.step("usage recorded", self.usage):
                self._optional("langfuse trace", self.langfuse)
        finally:
            revoked = self.step("revoke key", self.revoke)
        if revoked:
            self.step("revoked key 401", self.refused)
        return all(s.ok for s in self.steps)

    def _optional(self, name: str, action: Callable[[], str | None]) -> None:
        outcome: list[str | None] = []

        def wrapped() -> str:
            outcome.append(action())
            return outcome[-1] or "the project has no Langfuse connection: skipped"

        self.step(name, wrapped)


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body) if isinstance(body, dict) else {}
    return str(inner.get("message", "") if isinstance(inner, dict) else inner)[:300]


def wait_for(get: Callable[[], Any], done: Callable[[Any], bool], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def resolve(org: str | None, project: int | None, route: str | None, gateway: str | None) -> Target:
    """The organization, project and route to use: the ones named, else the only (or first) ones."""
    orgs = Organization.objects.order_by("pk")
    if org:
        found = orgs.filter(slug=org).first()
        if found is None:
            raise SmokeError(f"no organization '{org}'", "pass --org with an existing slug")
    else:
        found = next((o for o in orgs if Project.objects.filter(organization=o).exists()), None)
        if found is None:
            raise SmokeError("no organization has a project", "create one, or run `python manage.py seed_demo`")
    projects = Project.objects.filter(organization=found).select_related("team").order_by("pk")
    chosen = projects.filter(pk=project).first() if project else projects.first()
    if chosen is None:
        raise SmokeError(f"no project {project or ''} in '{found.slug}'".replace("  ", " "),
                         "pass --project with the id of one of the organization's projects")
    routes = ModelRoute.objects.filter(organization=found, is_active=True).order_by("pk")
    picked = routes.filter(name=route).first() if route else routes.first()
    if picked is None:
        raise SmokeError(f"no active route {route or ''} in '{found.slug}'".replace("  ", " "),
                         "pass --route with the name of an active route")
    return Target(found, chosen, picked, (gateway or settings.GATEWAY_INTERNAL_URL).rstrip("/"))


__all__ = ["Smoke", "SmokeError", "Step", "Target", "VirtualKey", "resolve"]
