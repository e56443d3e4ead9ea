"""Budgets hold under concurrency: many requests at once, over two proxies."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db.models import Sum

from gateway.models import UsageRecord
from gateway.plugin import contract
from tests.e2e.conftest import Stack
from tests.e2e.helpers import chat, issue_key, status_of, until
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def priced_route(t: Tenant) -> None:
    response = t.client("admin").post(t.url("routes/"), {
        "name": "priced", "input_cost_per_million": 1000, "output_cost_per_million": 2000,
        "deployments": [{"model": "gpt-4o-mini", "litellm_params": {"mock_response": "a priced answer"}}]},
        format="json")
    assert response.status_code == 201


def nano(amount: Decimal) -> int:
    return int(amount * contract.NANO)


def test_50_concurrent_requests_over_two_proxies_stay_within_the_budget(stack: Stack, acme: Tenant) -> None:
    priced_route(acme)
    warm = issue_key(acme, allowed_routes=["priced"])
    until(lambda: status_of(lambda: chat(stack.gateways[0].url, warm["key"], model="priced"))[0] == 200, 3)
    chat(stack.gateways[1].url, warm["key"], model="priced")
    until(lambda: UsageRecord.objects.filter(key_id=warm["id"]).count() == 2, 3)
    costs = set(UsageRecord.objects.filter(key_id=warm["id"]).values_list("cost", flat=True))
    assert len(costs) == 1  # every request costs the same, and the estimate has learnt the answer's length
    per_request = costs.pop()
    # 10.5 requests' worth (at the budget's $0.0001 precision): a request is admitted while spend and
    # holds are below the budget, so exactly 11 are, whatever the order they settle in.
    budget = (per_request * Decimal("10.5")).quantize(Decimal("0.0001"))
    admitted = -(-nano(budget) // nano(per_request))
    assert admitted == 11
    key = issue_key(acme, allowed_routes=["priced"], max_budget=str(budget))

    def one(i: int) -> int:
        return status_of(lambda: chat(stack.gateways[i % 2].url, key["key"], model="priced"))[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(one, range(50)))
    served = codes.count(200)
    print(f"budget ${budget} (10.5 requests of ${per_request}); served {served} of 50 concurrent")
    assert sorted(set(codes)) == [200, 429]
    assert served == admitted and codes.count(429) == 50 - admitted
    until(lambda: UsageRecord.objects.filter(key_id=key["id"]).count() == served, 5)
    spent = UsageRecord.objects.filter(key_id=key["id"]).aggregate(s=Sum("cost"))["s"]
    assert spent == served * per_request
    # The budget is passed only by what was in flight when it was reached: the one request
    # admitted while spend and holds were still below it.
    assert budget < spent < budget + per_request
    # Redis counters and the database agree, to the nano-dollar, for every scope.
    r = stack.client()
    for scope, ident, field in (("key", key["id"], "key_id"), ("project", acme.project.pk, "project_id"),
                                ("team", acme.team.pk, "team_id"), ("org", acme.org.pk, "organization_id")):
        counter = int(r.get(contract.budget_keys(scope, ident, "all")[0]) or 0)
        db = UsageRecord.objects.filter(**{field: ident}).aggregate(s=Sum("cost"))["s"] or Decimal(0)
        assert counter == nano(db), scope
        assert int(r.get(contract.budget_keys(scope, ident, "all")[1]) or 0) == 0  # no reservation left behind
    # and the key is refused from now on, on both proxies
    assert [one(0), one(1)] == [429, 429]


def test_a_team_budget_binds_every_key_of_the_team(stack: Stack, acme: Tenant) -> None:
    priced_route(acme)
    budget = Decimal("0.2")
    acme.client("owner").patch(acme.url(f"teams/{acme.team.pk}/"), {"max_budget": str(budget),
                                                                    "budget_period": "daily"}, format="json")
    keys = [issue_key(acme, allowed_routes=["priced"]) for _ in range(3)]
    gw = stack.gateways[0].url
    until(lambda: status_of(lambda: chat(gw, keys[0]["key"], model="priced"))[0] == 200, 3)
    results = [status_of(lambda k=k: chat(gw, k["key"], model="priced")) for _ in range(12) for k in keys]
    codes = [code for code, _ in results]
    served = 1 + codes.count(200)
    until(lambda: UsageRecord.objects.filter(team_id=acme.team.pk).count() == served, 5)
    records = UsageRecord.objects.filter(team_id=acme.team.pk)
    per_request = records.first().cost  # type: ignore[union-attr]
    spent = records.aggregate(s=Sum("cost"))["s"]
    print(f"team budget ${budget}; {served} requests of ${per_request} over 3 keys; spent ${spent}")
    # One request at a time: each is admitted while the team's spend is below the budget, so the
    # team spends the budget and at most one request more, and every key is refused after that.
    assert budget <= spent < budget + per_request
    assert served == -(-nano(budget) // nano(per_request)) and served > 3  # every key spent some of it
    first_refusal = codes.index(429)
    assert set(codes[first_refusal:]) == {429}, codes
    assert {k["id"] for k in keys} == set(records.values_list("key_id", flat=True))
    refused = [message for code, message in results if code == 429]
    assert all("Budget exceeded for its team" in m and "daily" in m for m in refused)
    # the gateway's counter for the team is the spend in the database
    today = contract.period_start("daily", dt.datetime.now(dt.UTC))
    assert int(stack.client().get(contract.budget_keys("team", acme.team.pk, today)[0]) or 0) == nano(spent)
