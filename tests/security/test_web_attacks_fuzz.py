"""Reviewer R1: garbage into every web form and query string. Every page under /orgs/{org}/ (and the
accounts pages) answers hostile input with a page (200/302/400/403/404), never a traceback (500).

Each URL of the `web:` namespace is called with the tenant's real ids in its path, by GET with hostile
query parameters and by POST with every form field the web UI knows set to the same hostile value."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from gateway.models import VirtualKey
from tests.factories import Tenant, make_evals
from tests.web.test_agent_pages import make_agent

# Every name a form of the web UI posts (templates under portal/templates/web and registration).
FIELDS = (
    "name", "description", "role", "team", "team_role", "email", "project", "allowed_routes", "max_budget",
    "soft_budget", "budget_period", "rpm_limit", "tpm_limit", "expires_at", "grace_period_seconds", "key", "model",
    "host", "public_key", "secret_key", "settings-api_base", "settings-api_version", "secrets-api_key",
    "clear-organization", "deployment_rows", "dep-0-credential", "dep-0-model", "dep-0-weight", "dep-0-priority",
    "dep-0-params", "dep-0-mock_response", "num_retries", "timeout_seconds", "input_cost_per_million",
    "output_cost_per_million", "fallbacks", "allowed_teams", "is_active", "prompt", "evaluator", "window_start",
    "window_end", "route", "dataset", "concurrency", "routes", "evaluators", "metric_regex", "metric_contains",
    "metric_exact_match", "cron", "interval_seconds", "sampling_rate", "max_traces", "max_judge_spend",
    "initial_lookback_hours", "alert_below", "alert_drop", "filter_name", "filter_tags", "filter_user_id",
    "filter_environment", "variables", "prompt_template", "labels", "pass_labels", "score_type", "min_value",
    "max_value", "pass_threshold", "output_mode", "template", "trace_id", "format", "from_time", "to_time",
    "max_items", "output_as", "tags", "environment", "user_id", "range", "start", "end", "password1", "password2",
    "scope", "alert_emails", "alert_webhook_url", "enabled", "username", "password",
    "focus", "max_steps", "max_tokens", "max_seconds", "max_spend", "content", "lookback_hours", "alert_on_new",
    "alert_growth",
)
QUERY = ("page", "q", "status", "days", "range", "start", "end", "run", "template", "actor", "action", "target_type",
         "since", "until", "after", "org", "section", "next", "sso")
HOSTILE = (
    "\x00", "-1", "99999999999999999999999999", "NaN", "9999-12-31T23:59:59Z", "<script>alert(1)</script>",
    "{\"a\": [1, {\"b\": null}]}", "a" * 5000, "\u202e\U0001f600", "http://169.254.169.254/latest/meta-data",
    " ", "\r\nX-Injected: 1",
)


def web_urls(t: Tenant) -> list[str]:
    """Every URL of the `web:` namespace with this tenant's ids in it (verbs: each the views know)."""
    e = t.evals
    assert e is not None
    ids = {"org_slug": t.org.slug, "project_id": t.project.pk, "team_id": t.team.pk, "key_id": t.key.pk,
           "route_id": t.route.pk, "credential_id": t.credential.pk, "evaluator_id": e.evaluator,
           "schedule_id": e.schedule, "run_id": e.run, "dataset_id": e.dataset, "benchmark_id": e.benchmark,
           "provider": "openai", "token": "inv_garbage", "uidb64": "MQ", "membership_id": 0,
           "team_membership_id": 0, "invitation_id": 0, "token_id": 0}
    from portal.models import ApiToken, Membership, TeamMembership

    ids["membership_id"] = Membership.objects.get(organization=t.org, user=t.users["member"]).pk
    ids["team_membership_id"] = TeamMembership.objects.get(team=t.team, user=t.users["member"]).pk
    ids["token_id"] = ApiToken.objects.filter(organization=t.org, user=t.users["member"]).first().pk  # type: ignore
    from evals.agent.models import AgentReport  # the agent's pages (tests/web/test_agent_pages.py make_agent)

    report = AgentReport.objects.filter(project=t.project).first()
    ids |= {"report_id": report.pk if report else 0, "index": 0}
    verbs = {"web:key-action": ("block", "unblock", "rotate", "nonsense"),
             "web:schedule-action": ("enable", "disable", "run", "nonsense"),
             "web:invitation-action": ("resend", "nonsense")}
    resolver = get_resolver()
    web = resolver.namespace_dict["web"][1]
    urls: list[str] = []

    def walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, URLPattern]]:
        out = []
        for p in patterns:
            if isinstance(p, URLResolver):
                out += walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and p.name:
                out.append((prefix + str(p.pattern), p))
        return out

    from django.urls import NoReverseMatch, reverse

    for _route, pattern in walk(web.url_patterns):
        name = f"web:{pattern.name}"
        if pattern.name in ("logout", "sso_start", "oidc_authentication_init", "oidc_authentication_callback"):
            continue
        needed = list(pattern.pattern.converters) if hasattr(pattern.pattern, "converters") else []
        for verb in verbs.get(name, ("",)):
            kwargs = {k: ids[k] for k in needed if k != "verb"}
            if "verb" in needed:
                kwargs["verb"] = verb
            try:
                urls.append(reverse(name, kwargs=kwargs))
            except NoReverseMatch:
                pass
    # the deleting ones last, so that they do not take the others' objects away first
    return sorted(set(urls), key=lambda u: ("delete" in u or "remove" in u or "revoke" in u, u))


def call_all(client: Client, urls: list[str], values: tuple[str, ...] = HOSTILE) -> list[str]:
    failures = []
    for url in urls:
        for value in values:
            for method in ("get", "post"):
                data = {f: value for f in (QUERY if method == "get" else FIELDS)}
                try:
                    response = getattr(client, method)(url, data)
                except Exception as exc:  # noqa: BLE001 - each traceback is a finding
                    failures.append(f"{method.upper()} {url} {value[:30]!r}: {type(exc).__name__}: {str(exc)[:200]}")
                    continue
                if response.status_code >= 500:
                    failures.append(f"{method.upper()} {url} {value[:30]!r}: {response.status_code}")
    return failures


@pytest.mark.django_db
def test_hostile_values_in_every_form_field_and_query_parameter_never_make_a_500(
        acme: Tenant, langfuse_standin: Any) -> None:
    make_evals(acme, langfuse_standin)
    make_agent(acme)
    urls = web_urls(acme)
    assert len(urls) > 40
    failures: list[str] = []
    for role in ("member", "owner"):  # a viewer's posts stop at the role check
        client = Client()
        client.force_login(acme.users[role])
        failures += call_all(client, urls)
    assert not failures, "\n".join(failures[:60])


@pytest.mark.django_db
def test_every_page_of_an_organization_answers_404_to_another_organizations_owner(
        acme: Tenant, globex: Tenant, langfuse_standin: Any) -> None:
    """Every `web:` URL under /orgs/acme/, with acme's ids, by GET and by POST: 404 to globex's owner
    (405 where the page has no such method: the method is checked first, for every organization alike),
    and nothing of acme in the answer."""
    make_evals(acme, langfuse_standin)
    outsider = Client()
    outsider.force_login(globex.users["owner"])
    leaks = []
    for url in (u for u in web_urls(acme) if u.startswith(f"/orgs/{acme.org.slug}/")):
        for method in ("get", "post"):
            response = getattr(outsider, method)(url, {"name": "x", "role": "owner"})
            body = response.content.decode(errors="replace")
            if response.status_code not in (404, 405) or acme.org.name in body or "acme-" in body:
                leaks.append(f"{method.upper()} {url}: {response.status_code}")
    assert not leaks, "\n".join(leaks)
    assert VirtualKey.objects.get(pk=acme.key.pk).status == "active"


@pytest.mark.django_db
def test_a_viewers_forged_post_to_any_page_is_refused(acme: Tenant, langfuse_standin: Any) -> None:
    """Every POST a viewer can forge under /orgs/acme/ is refused (403, or 405 where the page takes no
    POST), but for what a viewer may do: its own API tokens, and providers.json for a key it holds."""
    make_evals(acme, langfuse_standin)
    viewer = Client()
    viewer.force_login(acme.users["viewer"])
    def expected(url: str) -> tuple[int, ...]:
        if url.endswith("/tokens/"):
            return (200, 400)  # a token of its own, below or at its role
        if url.endswith("/providers.json"):
            return (400,)  # only with the key's plaintext
        if "/tokens/" in url:
            return (404,)  # the member's token: not the viewer's to see
        return (403, 405)

    accepted = []
    for url in (u for u in web_urls(acme) if u.startswith(f"/orgs/{acme.org.slug}/")):
        response = viewer.post(url, {"name": "x", "role": "admin", "email": "viewer@acme.test", "range": "30"})
        codes = expected(url)
        if response.status_code not in codes:
            accepted.append(f"POST {url}: {response.status_code}")
    assert not accepted, "\n".join(accepted)
    assert VirtualKey.objects.get(pk=acme.key.pk).status == "active"
