"""'Test this route': one real, bounded call through the gateway, as any client makes it.

The call uses a short-lived key issued for it, not the project's service key: the key is issued and
revoked by the admin who tests (both in the audit log, under their name), may call only this route,
has a budget of its own (TEST_MAX_BUDGET) and counts against its project's, team's and organization's
budgets like any key, and expires after KEY_LIFETIME even if its revocation fails. The service key's
spend would be mixed with the evaluations' judge calls, and its use is attributed to no one. The call
itself has a timeout, no retries and a max_tokens."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

import openai
from django.core.exceptions import ValidationError
from django.utils import timezone

from evals.gateway_client import GatewayCallError, GatewayClient
from gateway.backends import GatewayError
from gateway.models import ModelRoute
from gateway.services import keys as key_services
from portal.access import Actor
from portal.api.errors import validation_detail
from portal.models import Project

log = logging.getLogger(__name__)
TEST_MAX_BUDGET = Decimal("0.50")
TEST_TIMEOUT_SECONDS = 30.0
TEST_MAX_TOKENS = 256
KEY_LIFETIME = dt.timedelta(minutes=5)
DEFAULT_PROMPT = "Say hello in one short sentence."
MAX_PROMPT = 2000


@dataclass
class RouteTestResult:
    """What the page shows: the answer and its latency, cost and tokens, or the error."""

    route: str
    project: str
    answer: str = ""
    latency_ms: float = 0.0
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    key_prefix: str = ""


def route_test(*, actor: Actor, route: ModelRoute, project: Project, prompt: str) -> RouteTestResult:
    """Issue the test key, make the call, revoke the key. Never raises for the call's own failures."""
    result = RouteTestResult(route=route.name, project=project.name)
    try:
        issued = key_services.key_create(actor=actor, data={
            "name": f"route test: {route.name}"[:100], "team": project.team, "project": project,
            "owner": actor.user, "allowed_routes": [route], "max_budget": TEST_MAX_BUDGET,
            "expires_at": timezone.now() + KEY_LIFETIME, "metadata": {"purpose": "route test"}})
    except ValidationError as exc:
        result.error = "; ".join(m for ms in validation_detail(exc).values() for m in ms)
        return result
    except GatewayError:
        result.error = "The gateway could not register the test key; try again."
        return result
    result.key_prefix = issued.key.key_prefix
    try:
        client = GatewayClient(issued.plaintext, timeout=TEST_TIMEOUT_SECONDS, max_retries=0)
        reply = client.chat(route.name, [{"role": "user", "content": prompt}], purpose="route-test",
                            max_tokens=TEST_MAX_TOKENS)
    except GatewayCallError as exc:
        result.error = f"{exc.status}: {exc}" if exc.status else str(exc)
    except openai.OpenAIError as exc:
        result.error = f"The gateway's answer could not be read ({type(exc).__name__})."
    except Exception:  # noqa: BLE001 - a page shows the failure; the log keeps the traceback
        log.exception("route test of %s failed", route.model_group)
        result.error = "The test failed with an unexpected error; it was logged."
    else:
        result.answer, result.latency_ms, result.cost = reply.content, reply.latency_ms, reply.cost
        result.prompt_tokens, result.completion_tokens = reply.prompt_tokens, reply.completion_tokens
    finally:
        try:
            key_services.key_revoke(actor=actor, key=issued.key)
        except Exception:  # noqa: BLE001 - the key expires after KEY_LIFETIME anyway
            log.exception("revoking the route test key %s failed", issued.key.pk)
    return result
