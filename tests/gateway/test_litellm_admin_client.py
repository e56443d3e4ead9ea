"""The HTTP client of the litellm-admin backend: bounded retries, permanent
errors, nothing secret in its messages; and the fake's own contract check."""

from __future__ import annotations

import httpx
import pytest

from gateway.backends.litellm_admin import AdminClient, LiteLLMAdminError
from tests.gateway.litellm_admin_fake import JSON, FakeLiteLLM, contract_problems, fake

__all__ = ["fake"]  # a fixture


def test_the_contract_check_catches_what_litellm_would_drop_or_refuse() -> None:
    def problems(method: str, path: str, body: JSON) -> list[str]:
        return contract_problems(httpx.Request(method, f"http://x{path}", json=body))

    assert problems("POST", "/key/update", {"key": "a" * 64, "expires": "2030-01-01"})  # not a field: dropped
    assert problems("POST", "/key/update", {"models": []})  # neither key nor key_alias
    assert problems("POST", "/team/new", {"team_id": "t", "budget": 5})
    assert problems("POST", "/model/new", {"model_name": "m", "litellm_params": {"model": "x", "wieght": 1},
                                           "model_info": {"id": "i"}})
    assert problems("POST", "/key/regenerate_all", {})
    assert not problems("POST", "/key/block", {"key": "a" * 64})


def test_a_client_retries_429_and_5xx_but_not_4xx(fake: FakeLiteLLM) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(502), httpx.Response(200,
                                                                                                   json={"ok": 1})])
    sleeps: list[float] = []
    client = AdminClient(transport=httpx.MockTransport(lambda r: next(answers)), sleep=sleeps.append)
    assert client.get("/team/list") == {"ok": 1} and sleeps == [2.0, 1.0]
    client = AdminClient(transport=httpx.MockTransport(lambda r: FakeLiteLLM.error(400, "Invalid key sk-abcdef12")),
                         sleep=sleeps.append)
    with pytest.raises(LiteLLMAdminError) as caught:
        client.post("/key/update", {"key": "x"})
    assert caught.value.permanent and len(sleeps) == 2 and "sk-abcdef12" not in str(caught.value)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = AdminClient(transport=httpx.MockTransport(unreachable), sleep=sleeps.append)
    with pytest.raises(LiteLLMAdminError, match="unreachable") as caught:
        client.get("/team/list")
    assert not caught.value.permanent
