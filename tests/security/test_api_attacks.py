"""A hostile tenant against the REST API: stealing a Langfuse secret with a host change,
making the portal call internal addresses, reading the far side's answer through error
messages, lifting limits a manager set, and keeping keys after being removed."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from gateway.models import KeyStatus, VirtualKey
from gateway.plugin import contract
from gateway.services import routes
from portal.access import system_actor
from portal.models import AuditLogEntry, Membership, TeamMembership
from tests.factories import Tenant
from tests.fake_http import Answer, FakeServer, Seen
from tests.langfuse_standin import LangfuseStandin
from tests.langfuse_standin.fixtures import PUBLIC_KEY, SECRET_KEY

BANNER = "FAR-SIDE-BANNER internal build 7f3a, db=10.0.0.12"


class FarSide(FakeServer):
    """A server of the attacker's choosing: it answers like Langfuse (or with an error
    page carrying a banner) and records the Authorization headers it receives."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        super().__init__(self.answer)

    def answer(self, request: Seen) -> Answer:
        if self.status != 200:
            return Answer.json({"message": BANNER}, self.status)
        if request.path.startswith("/api/public/health"):
            return Answer.json({"status": "OK", "version": "4.0.0"})
        return Answer.json({"data": [{"id": "stolen", "name": "attacker"}], "projects": []})

    @property
    def authorizations(self) -> list[str]:
        return [r.headers.get("Authorization") or "" for r in self.seen]

    def secrets_received(self) -> list[str]:
        out = []
        for header in self.authorizations:
            if header.startswith("Basic "):
                out.append(base64.b64decode(header[6:]).decode().partition(":")[2])
        return out


@pytest.fixture
def far_side() -> Iterator[FarSide]:
    server = FarSide().start()
    yield server
    server.stop()


@pytest.fixture
def no_allowance(settings: Any) -> None:
    """The platform allows no internal network (production's default)."""
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = []


def langfuse_url(t: Tenant) -> str:
    return t.url(f"projects/{t.project.pk}/langfuse/")


def connect(t: Tenant, host: str, secret: str | None = SECRET_KEY, role: str = "owner") -> Any:
    body = {"host": host, "public_key": PUBLIC_KEY} | ({"secret_key": secret} if secret else {})
    return t.client(role).put(langfuse_url(t), body, format="json")


# Finding 4: the Langfuse secret sent to a host of the caller's choosing ----------------

def test_a_host_change_without_the_secret_is_refused_and_sends_the_secret_nowhere(
        acme: Tenant, langfuse_standin: LangfuseStandin, far_side: FarSide) -> None:
    assert connect(acme, langfuse_standin.url).status_code == 201
    moved = connect(acme, far_side.url, secret=None, role="team_admin")
    assert moved.status_code == 400, moved.content
    assert moved.json()["secret_key"] == ["Enter the secret key again when you change the host."]
    assert SECRET_KEY not in far_side.secrets_received()
    assert far_side.authorizations == []  # the far side was not called at all
    assert acme.client("owner").get(langfuse_url(acme)).json()["host"] == langfuse_standin.url


def test_a_host_change_with_the_secret_entered_again_is_accepted(
        acme: Tenant, langfuse_standin: LangfuseStandin) -> None:
    assert connect(acme, langfuse_standin.url).status_code == 201
    same_server = langfuse_standin.url.replace("127.0.0.1", "localhost")
    assert connect(acme, same_server, secret=SECRET_KEY).status_code == 200


def test_the_org_key_needs_its_secret_on_every_save(acme: Tenant, far_side: FarSide) -> None:
    response = acme.client("owner").put(acme.url("langfuse/"), {"host": far_side.url, "public_key": "pk"},
                                        format="json")
    assert response.status_code == 400 and "secret_key" in response.json()
    assert far_side.authorizations == []


def test_an_api_base_change_without_the_secrets_is_refused(acme: Tenant, far_side: FarSide) -> None:
    """The gateway sends a credential's api_key to its api_base: moving the api_base
    must not carry the stored key to a server of the caller's choosing."""
    owner = acme.client("owner")
    cred = owner.post(acme.url("credentials/"), {"name": "vllm", "provider": "openai_compatible",
                                                 "settings": {"api_base": "http://127.0.0.1:9/v1"},
                                                 "secrets": {"api_key": "sk-vllm-secret"}}, format="json")
    assert cred.status_code == 201, cred.content
    path = acme.url(f"credentials/{cred.json()['id']}/")
    moved = owner.patch(path, {"settings": {"api_base": far_side.url + "/v1"}}, format="json")
    assert moved.status_code == 400, moved.content
    assert moved.json()["secrets"] == ["Enter the secrets again when you change the api_base."]
    again = owner.patch(path, {"settings": {"api_base": far_side.url + "/v1"}, "secrets": {"api_key": "sk-new"}},
                        format="json")
    assert again.status_code == 200, again.content


# Finding 4: any host accepted (the portal as a probe of the internal network) -----------

INTERNAL_HOSTS = {
    "loopback": "http://127.0.0.1:{port}",
    "loopback by name": "http://localhost:{port}",
    "private 10/8": "http://10.0.0.5",
    "cloud metadata": "http://169.254.169.254",
    "metadata by name": "http://metadata.google.internal",
    "IPv4-mapped IPv6 loopback": "http://[::ffff:127.0.0.1]:{port}",
    "decimal loopback": "http://2130706433:{port}",
    "hex short loopback": "http://0x7f.1:{port}",
    "octal loopback": "http://0177.0.0.1:{port}",
    "IPv6 loopback": "http://[::1]:{port}",
    "CGNAT": "http://100.64.0.1",
    "AWS IPv6 metadata": "http://[fd00:ec2::254]",
    "unspecified": "http://0.0.0.0:{port}",
    "userinfo": "http://user:pass@127.0.0.1:{port}",
    "not http": "file:///etc/passwd",
}


@pytest.mark.parametrize("name", list(INTERNAL_HOSTS))
def test_a_langfuse_host_on_an_internal_address_is_refused(
        acme: Tenant, langfuse_standin: LangfuseStandin, no_allowance: None, name: str) -> None:
    host = INTERNAL_HOSTS[name].format(port=langfuse_standin.port)
    response = connect(acme, host)
    assert response.status_code == 400, (name, response.content)
    message = " ".join(response.json()["host"])
    # Odd spellings are refused by URL validation already, the rest by the outbound policy.
    assert any(m in message for m in ("The portal does not connect to internal addresses", "Expected an http(s) URL",
                                      "Enter a valid URL.", "without a user name or password")), message
    assert not langfuse_standin.requests  # nothing reached the server


@pytest.mark.parametrize("name", ["loopback", "private 10/8", "cloud metadata", "IPv4-mapped IPv6 loopback",
                                  "decimal loopback", "loopback by name", "userinfo"])
def test_other_tenant_urls_on_internal_addresses_are_refused(
        acme: Tenant, far_side: FarSide, no_allowance: None, name: str) -> None:
    host = INTERNAL_HOSTS[name].format(port=far_side.httpd.server_address[1])
    owner = acme.client("owner")
    hook = owner.patch(acme.url(), {"alert_webhook_url": host + "/hook"}, format="json")
    assert hook.status_code == 400 and "alert_webhook_url" in hook.json(), (name, hook.content)
    org_key = owner.put(acme.url("langfuse/"), {"host": host, "public_key": "pk", "secret_key": "sk"}, format="json")
    assert org_key.status_code == 400 and "host" in org_key.json(), (name, org_key.content)
    cred = owner.post(acme.url("credentials/"), {"name": f"vllm {name}", "provider": "openai_compatible",
                                                 "settings": {"api_base": host + "/v1"}}, format="json")
    assert cred.status_code == 400, (name, cred.content)
    assert "api_base" in " ".join(cred.json()["settings"])
    assert far_side.authorizations == []


def test_a_named_internal_network_is_allowed_when_the_platform_allows_it(
        acme: Tenant, langfuse_standin: LangfuseStandin, settings: Any) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = ["10.0.0.0/8", "vllm.internal"]
    owner = acme.client("owner")
    for base in ("http://10.1.2.3:8000/v1", "http://vllm.internal:8000/v1"):
        cred = owner.post(acme.url("credentials/"), {"name": f"vllm {base}", "provider": "openai_compatible",
                                                     "settings": {"api_base": base}}, format="json")
        assert cred.status_code == 201, cred.content
    # ... and loopback is still refused: it was not named.
    assert connect(acme, langfuse_standin.url).status_code == 400


def test_the_webhook_is_not_sent_to_an_internal_address_at_call_time(
        acme: Tenant, far_side: FarSide, settings: Any) -> None:
    """A URL saved while the platform allowed loopback (or a name that now resolves
    inside) is checked again when the alert is sent."""
    from portal import notify

    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = []
    assert notify.post_webhook(far_side.url + "/hook", {"subject": "x"}) is False
    assert far_side.authorizations == []


# Finding 4: the far side's answer echoed in the error -------------------------------------

@pytest.mark.parametrize("status", [403, 404, 500, 418])
def test_the_far_sides_answer_is_not_echoed(acme: Tenant, far_side: FarSide, status: int) -> None:
    far_side.status = status
    response = connect(acme, far_side.url)
    assert response.status_code == 400
    text = response.content.decode()
    assert "FAR-SIDE-BANNER" not in text and "10.0.0.12" not in text, text
    assert str(status) in text  # but it says what failed


# Finding 5: a member lifts limits a manager set ----------------------------------------------

def _second_route(t: Tenant) -> None:
    routes.route_create(actor=system_actor(t.org, "tests"), data={
        "name": "other", "deployments": [{"credential": None, "model": "gpt-4o-mini",
                                          "litellm_params": {"mock_response": "other"}}]})


@pytest.fixture
def limited(acme: Tenant) -> Tenant:
    """The member's key, limited by a team admin."""
    _second_route(acme)
    expiry = (timezone.now() + dt.timedelta(days=10)).isoformat()
    response = acme.client("team_admin").patch(acme.url(f"keys/{acme.key.pk}/"), {
        "max_budget": 10, "soft_budget": 5, "budget_period": "monthly", "rpm_limit": 5, "tpm_limit": 1000,
        "expires_at": expiry, "allowed_routes": ["chat"]}, format="json")
    assert response.status_code == 200, response.content
    return acme


LIFTS = {
    "max_budget": [None, 20],
    "soft_budget": [None, 8],
    "budget_period": ["daily", "none"],
    "rpm_limit": [None, 6],
    "tpm_limit": [None, 5000],
    "expires_at": [None, "later"],
}


@pytest.mark.parametrize("field,value", [(f, v) for f, values in LIFTS.items() for v in values])
def test_a_member_cannot_lift_a_limit_of_its_own_key(limited: Tenant, field: str, value: Any) -> None:
    if value == "later":
        value = (timezone.now() + dt.timedelta(days=100)).isoformat()
    before = VirtualKey.objects.get(pk=limited.key.pk)
    response = limited.client("member").patch(limited.url(f"keys/{limited.key.pk}/"), {field: value},
                                               format="json")
    assert response.status_code == 403, (field, value, response.content)
    assert field in response.json()["detail"] and "admin of the key's team" in response.json()["detail"]
    after = VirtualKey.objects.get(pk=limited.key.pk)
    assert getattr(after, field) == getattr(before, field)


@pytest.mark.parametrize("value", [[], ["chat", "other"], ["other"]])
def test_a_member_cannot_widen_its_keys_routes(limited: Tenant, value: list[str]) -> None:
    response = limited.client("member").patch(limited.url(f"keys/{limited.key.pk}/"), {"allowed_routes": value},
                                               format="json")
    assert response.status_code == 403, response.content
    assert "allowed_routes" in response.json()["detail"]
    assert [r.name for r in VirtualKey.objects.get(pk=limited.key.pk).allowed_routes.all()] == ["chat"]


def test_a_member_may_lower_its_limits_and_rename_its_key(limited: Tenant) -> None:
    soon = (timezone.now() + dt.timedelta(days=2)).isoformat()
    response = limited.client("member").patch(limited.url(f"keys/{limited.key.pk}/"), {
        "name": "renamed", "max_budget": 7, "soft_budget": 3, "budget_period": "monthly", "rpm_limit": 2,
        "tpm_limit": 10, "expires_at": soon, "allowed_routes": ["chat"], "metadata": {"laptop": "x1"}},
        format="json")
    assert response.status_code == 200, response.content
    key = VirtualKey.objects.get(pk=limited.key.pk)
    assert (key.name, key.max_budget, key.rpm_limit) == ("renamed", 7, 2)


def test_a_team_admin_still_lifts_limits(limited: Tenant) -> None:
    response = limited.client("team_admin").patch(limited.url(f"keys/{limited.key.pk}/"), {
        "max_budget": None, "rpm_limit": None, "expires_at": None, "allowed_routes": []}, format="json")
    assert response.status_code == 200, response.content


# Finding 6: a removed member keeps its keys ----------------------------------------------------

def _key_doc(key_id: int) -> dict[str, Any]:
    r = redis.Redis.from_url(django_settings.REDIS_URL, decode_responses=True)
    return json.loads(r.get(contract.key_doc(key_id)) or "{}")


def _second_member_key(t: Tenant) -> int:
    response = t.client("member").post(t.url("keys/"), {"name": "second", "team": t.team.pk,
                                                        "project": t.project.pk}, format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


@pytest.mark.django_db(transaction=True)
def test_removing_a_member_from_the_organization_revokes_its_keys_everywhere(acme: Tenant, globex: Tenant) -> None:
    ids = [acme.key.pk, _second_member_key(acme)]
    membership = Membership.objects.get(organization=acme.org, user=acme.users["member"])
    assert acme.client("admin").delete(acme.url(f"members/{membership.pk}/")).status_code == 204
    for key_id in ids:
        assert VirtualKey.objects.get(pk=key_id).status == KeyStatus.REVOKED
        assert _key_doc(key_id).get("status") == "revoked"
        entry = AuditLogEntry.objects.get(organization=acme.org, action="key.revoke", target_id=str(key_id))
        assert entry.actor == acme.users["admin"] and "removed" in json.dumps(entry.after)
    assert VirtualKey.objects.get(pk=globex.key.pk).status == KeyStatus.ACTIVE  # another tenant is untouched


@pytest.mark.django_db(transaction=True)
def test_removing_a_member_from_a_team_revokes_its_keys_of_that_team(acme: Tenant) -> None:
    ids = [acme.key.pk, _second_member_key(acme)]
    tm = TeamMembership.objects.get(team=acme.team, user=acme.users["member"])
    response = acme.client("team_admin").delete(acme.url(f"teams/{acme.team.pk}/members/{tm.pk}/"))
    assert response.status_code == 204
    for key_id in ids:
        assert VirtualKey.objects.get(pk=key_id).status == KeyStatus.REVOKED
        assert _key_doc(key_id).get("status") == "revoked"
        assert AuditLogEntry.objects.filter(action="key.revoke", target_id=str(key_id),
                                            actor=acme.users["team_admin"]).exists()


@pytest.mark.django_db(transaction=True)
def test_a_removed_team_admin_leaves_the_keys_it_issued_to_others(acme: Tenant) -> None:
    issued = acme.client("team_admin").post(acme.url("keys/"), {
        "name": "for the member", "team": acme.team.pk, "project": acme.project.pk,
        "owner": acme.users["member"].email}, format="json")
    assert issued.status_code == 201, issued.content
    membership = Membership.objects.get(organization=acme.org, user=acme.users["team_admin"])
    assert acme.client("admin").delete(acme.url(f"members/{membership.pk}/")).status_code == 204
    assert VirtualKey.objects.get(pk=issued.json()["id"]).status == KeyStatus.ACTIVE
    assert VirtualKey.objects.get(pk=acme.key.pk).status == KeyStatus.ACTIVE


# Finding 7: a budget added mid-period starts from zero on the gateway ------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scope", ["key", "project", "team", "org"])
def test_a_budget_added_mid_period_starts_from_the_periods_spend(acme: Tenant, scope: str) -> None:
    """$5 spent this month, then a $2 monthly budget: the gateway's counter holds $5."""
    from gateway.models import UsageDaily

    UsageDaily.objects.create(organization=acme.org, day=timezone.now().date(), key=acme.key, team=acme.team,
                              project=acme.project, route="chat", requests=5, cost=5)
    path, ident = {"key": (f"keys/{acme.key.pk}/", acme.key.pk), "project": (f"projects/{acme.project.pk}/",
                   acme.project.pk), "team": (f"teams/{acme.team.pk}/", acme.team.pk), "org": ("", acme.org.pk)}[scope]
    response = acme.client("owner").patch(acme.url(path), {"max_budget": 2, "budget_period": "monthly"},
                                          format="json")
    assert response.status_code == 200, response.content
    r = redis.Redis.from_url(django_settings.REDIS_URL, decode_responses=True)
    label = contract.period_start("monthly", timezone.now())
    assert int(r.get(contract.budget_keys(scope, ident, label)[0]) or 0) == 5 * contract.NANO


@pytest.mark.parametrize("field", ["public_key", "secret_key"])
def test_langfuse_keys_that_are_secret_references_are_refused(
        acme: Tenant, langfuse_standin: LangfuseStandin, field: str) -> None:
    """LiteLLM resolves `os.environ/NAME` in the Langfuse logging vars the gateway hands it:
    a project's public key `os.environ/LITELLM_MASTER_KEY` would send the gateway's master key
    to the Langfuse host as a credential."""
    body = {"host": langfuse_standin.url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY,
            field: "os.environ/LITELLM_MASTER_KEY"}
    response = acme.client("owner").put(acme.url(f"projects/{acme.project.pk}/langfuse/"), body, format="json")
    assert response.status_code == 400, response.content
    assert "secret reference" in " ".join(response.json()[field])
    assert "LITELLM_MASTER_KEY" not in response.content.decode()
    org_key = acme.client("owner").put(acme.url("langfuse/"), body, format="json")
    assert org_key.status_code == 400 and field in org_key.json(), org_key.content
    assert not langfuse_standin.requests  # refused before any call
