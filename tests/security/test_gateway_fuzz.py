"""Property-based fuzz of the gateway's request surface against a real proxy (hypothesis): random
JSON bodies, field types, control fields, headers, content types, methods and paths, with a key of
acme's, of globex's, or none. Whatever is sent: no 5xx, no internal text, and nothing of the other
organization is ever served."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.plugin.requests import admission as policy
from tests.e2e.helpers import issue_key
from tests.e2e.stack import Stack
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INTERNAL = ("Exception", "Traceback", "litellm.", "object has no attribute", 'File "', "model group")
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=24)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 40), 2 ** 40), st.floats(allow_nan=False,
                   allow_infinity=False, width=32), NAME)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(NAME, inner, max_size=4)), max_leaves=12)
KNOWN_FIELDS = sorted({*policy.CHAT, *policy.RESPONSES, *policy.MESSAGES, *policy.EMBEDDINGS,
                       *policy.COMPLETIONS, *policy.DROPPED, *policy.CONTROL})
LLM_PATHS = sorted(policy.ROUTES)
OTHER_PATHS = ["/v1/models", "/v1/model/info", "/model/info", "/health", "/health/liveliness", "/key/info",
               "/v1/files", "/v1/batches", "/anthropic/v1/messages", "/openai/v1/chat/completions", "/ui/",
               "/v1/realtime", "/spend/logs", "/config/yaml", "/engines/chat/chat/completions", "/v2/chat",
               "/openai/deployments/chat/chat/completions", "/v1/chat/completions/x", "/"]
HELLO = [{"role": "user", "content": "Say hello"}]


@st.composite
def bodies(draw: Any) -> Any:
    """Mostly a valid chat body with a few fields added, replaced or of the wrong type; sometimes anything."""
    kind = draw(st.sampled_from(["valid+", "valid+", "valid+", "any", "types"]))
    if kind == "any":
        return draw(JSON)
    body: dict[str, Any] = {"model": draw(st.sampled_from(["chat", "chat", "globex/chat", "acme/chat", "nope"])),
                            "messages": HELLO}
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.one_of(st.sampled_from(KNOWN_FIELDS), NAME))
        body[field] = draw(JSON) if kind == "types" else draw(st.one_of(SCALAR, JSON))
    return body


@st.composite
def calls(draw: Any) -> dict[str, Any]:
    path = draw(st.one_of(st.sampled_from(LLM_PATHS), st.sampled_from(LLM_PATHS), st.sampled_from(OTHER_PATHS),
                          NAME.map(lambda n: "/" + n)))
    body = draw(bodies())
    content = draw(st.one_of(st.just(json.dumps(body).encode()), st.just(json.dumps(body).encode()),
                             st.binary(max_size=64)))
    headers = {"content-type": draw(st.sampled_from(["application/json", "application/json", "text/plain",
                                                     "application/x-www-form-urlencoded", "", "multipart/form-data"]))}
    for _ in range(draw(st.integers(0, 2))):
        headers["x-litellm-" + draw(NAME)] = draw(NAME)
    return {"method": draw(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE"])), "path": path,
            "content": content, "headers": headers, "who": draw(st.sampled_from(["acme", "acme", "globex", "none",
                                                                                  "random"]))}


def test_the_request_surface_never_fails_leaks_or_crosses_organizations(stack: Stack, live_acme: Tenant,
                                                                       live_globex: Tenant) -> None:
    keys = {"acme": issue_key(live_acme)["key"], "globex": issue_key(live_globex)["key"], "none": None,
            "random": "sk-not-a-key-0123456789"}
    gateway = stack.gateways[0].url
    seen: dict[int, int] = {}

    with httpx.Client(timeout=30) as client:
        @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(call=calls())
        def attack(call: dict[str, Any]) -> None:
            headers = dict(call["headers"])
            if keys[call["who"]]:
                headers["authorization"] = f"Bearer {keys[call['who']]}"
            response = client.request(call["method"], gateway + call["path"], content=call["content"],
                                      headers=headers)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            text = response.text
            assert response.status_code < 500, (call, response.status_code, text[:400])
            for marker in INTERNAL:
                assert marker not in text, (call, marker, text[:400])
            other = {"acme": "globex", "globex": "acme"}.get(call["who"])
            if other:
                assert f"hello from {other}" not in text, (call, text[:400])
            if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                error = response.json().get("error")
                assert isinstance(error, dict) and error.get("message"), (call, text[:400])

        attack()
    print("statuses:", dict(sorted(seen.items())))
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0
