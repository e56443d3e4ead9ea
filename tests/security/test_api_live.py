"""A hostile tenant against the real proxies: keeping a key after being removed, and
spending a budget added mid-period a second time."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from gateway.models import UsageDaily, UsageRecord
from portal.models import Membership, TeamMembership
from tests.e2e.helpers import chat, issue_key, status_of, until
from tests.e2e.stack import Stack
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _served_everywhere(stack: Stack, key: str) -> None:
    for gw in stack.gateways:
        assert status_of(lambda gw=gw: chat(gw.url, key))[0] == 200  # and now cached in both proxies


def _refused_everywhere_within_1s(stack: Stack, key: str) -> None:
    for gw in stack.gateways:
        waited = until(lambda gw=gw: status_of(lambda: chat(gw.url, key))[0] == 401, 1.0, 0.01)
        print(f"{gw.name}: 401 after {waited * 1000:.0f} ms")
    code, message = status_of(lambda: chat(stack.gateways[1].url, key))
    assert code == 401 and "revoked" in message, (code, message)


def test_a_member_removed_from_the_organization_is_refused_on_both_proxies_within_1s(
        stack: Stack, live_acme: Tenant) -> None:
    _served_everywhere(stack, live_acme.key_plaintext)
    membership = Membership.objects.get(organization=live_acme.org, user=live_acme.users["member"])
    assert live_acme.client("admin").delete(live_acme.url(f"members/{membership.pk}/")).status_code == 204
    _refused_everywhere_within_1s(stack, live_acme.key_plaintext)


def test_a_member_removed_from_the_team_is_refused_on_both_proxies_within_1s(
        stack: Stack, live_acme: Tenant) -> None:
    _served_everywhere(stack, live_acme.key_plaintext)
    tm = TeamMembership.objects.get(team=live_acme.team, user=live_acme.users["member"])
    response = live_acme.client("team_admin").delete(live_acme.url(f"teams/{live_acme.team.pk}/members/{tm.pk}/"))
    assert response.status_code == 204
    _refused_everywhere_within_1s(stack, live_acme.key_plaintext)


def test_a_budget_added_mid_period_counts_what_the_period_spent_already(stack: Stack, live_acme: Tenant) -> None:
    t = live_acme
    response = t.client("admin").post(t.url("routes/"), {
        "name": "priced", "input_cost_per_million": 100000, "output_cost_per_million": 100000,
        "deployments": [{"model": "gpt-4o-mini", "litellm_params": {"mock_response": "a priced answer"}}]},
        format="json")
    assert response.status_code == 201, response.content
    key = issue_key(t, allowed_routes=["priced"])  # no budget yet
    gw = stack.gateways[0].url
    until(lambda: status_of(lambda: chat(gw, key["key"], model="priced"))[0] == 200, 3)

    def spent() -> Decimal:
        return UsageRecord.objects.filter(key_id=key["id"]).aggregate(s=Sum("cost"))["s"] or Decimal(0)

    def records() -> int:
        return UsageRecord.objects.filter(key_id=key["id"]).count()

    until(lambda: records() == 1, 5)
    while spent() < 5:
        n = records()
        assert status_of(lambda: chat(gw, key["key"], model="priced"))[0] == 200
        until(lambda n=n: records() > n, 5)
    until(lambda: UsageDaily.objects.filter(key_id=key["id"]).aggregate(s=Sum("cost"))["s"] == spent(), 5)
    print(f"spent ${spent()} this month without a budget")

    response = t.client("team_admin").patch(t.url(f"keys/{key['id']}/"), {"max_budget": 2,
                                                                           "budget_period": "monthly"}, format="json")
    assert response.status_code == 200, response.content
    for url in (s.url for s in stack.gateways):
        code, message = status_of(lambda url=url: chat(url, key["key"], model="priced"))
        print(f"after a $2 monthly budget: {code} {message}")
        assert code == 429 and "Budget exceeded" in message, (code, message)
