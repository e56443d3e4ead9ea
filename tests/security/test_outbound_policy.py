"""The outbound URL policy (portal/outbound.py) by itself: what it refuses, what a
platform may allow, and that the call-time check holds against a name that changes its
answer (DNS rebinding) and against redirects."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from evals.langfuse_client import LangfuseClient, LangfuseError
from portal import notify, outbound
from tests.fake_http import Answer, FakeServer, Seen

REFUSED = {
    "http://127.0.0.1/": "loopback",
    "http://127.8.9.10/": "loopback",
    "http://2130706433/": "loopback",
    "http://0x7f000001/": "loopback",
    "http://0x7f.1/": "loopback",
    "http://0177.0.0.1/": "loopback",
    "http://127.1/": "loopback",
    "http://[::1]/": "loopback",
    "http://[::ffff:127.0.0.1]/": "loopback",
    "http://[::ffff:7f00:1]/": "loopback",
    "http://localhost/": "loopback",
    "http://api.localhost./": "loopback",
    "http://10.0.0.1/": "private",
    "http://172.16.5.4/": "private",
    "http://192.168.0.1/": "private",
    "http://[::ffff:192.168.0.1]/": "private",
    "http://[64:ff9b::10.0.0.1]/": "private",
    "http://[fc00::1]/": "private",
    "http://100.64.0.1/": "CGNAT",
    "http://169.254.1.1/": "link-local",
    "http://[fe80::1]/": "link-local",
    "http://169.254.169.254/latest/meta-data/": "metadata",
    "http://[fd00:ec2::254]/": "metadata",
    "http://100.100.100.200/": "metadata",
    "http://metadata.google.internal/": "metadata",
    "http://METADATA.google.internal./": "metadata",
    "http://0.0.0.0/": "unspecified",
    "http://[::]/": "unspecified",
    "http://224.0.0.1/": "multicast",
    "http://[ff02::1]/": "multicast",
    "http://192.0.2.1/": "address",  # documentation range: not global
    "http://user:pw@api.openai.com/": "user name",
    "http://@api.openai.com/": "user name",
    "ftp://api.openai.com/": "http(s)",
    "file:///etc/passwd": "http(s)",
    "gopher://127.0.0.1:6379/_INFO": "http(s)",
    "http://api.openai.com:99999/": "port",
}


@pytest.fixture
def no_allowance(settings: Any) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = []


@pytest.mark.parametrize("url", list(REFUSED))
def test_internal_and_malformed_urls_are_refused(no_allowance: None, url: str) -> None:
    with pytest.raises(outbound.OutboundRefused) as refused:
        outbound.check_url(url)
    assert REFUSED[url] in str(refused.value)


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "https://cloud.langfuse.com", "http://8.8.8.8:8000/v1",
                                 "https://[2606:4700:4700::1111]/", "https://hooks.slack.example/services/x"])
def test_public_and_unresolvable_urls_are_accepted_at_save_time(no_allowance: None, url: str) -> None:
    outbound.check_url(url)


def test_every_dns_answer_is_checked(no_allowance: None, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 443)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(outbound.OutboundRefused, match="intranet.example resolves to a private address"):
        outbound.check_url("https://intranet.example/")


def test_the_platform_allows_named_networks_and_hosts_but_never_metadata(settings: Any) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = ["10.0.0.0/8", "vllm.internal", ".corp.example", "169.254.0.0/16"]
    for url in ("http://10.2.3.4:8000/v1", "http://[::ffff:10.2.3.4]/", "http://vllm.internal:8000/v1",
                "http://gpu1.corp.example/"):
        outbound.check_url(url)
    for url in ("http://192.168.1.1/", "http://127.0.0.1/", "http://169.254.169.254/",
                "http://metadata.google.internal/"):
        with pytest.raises(outbound.OutboundRefused):
            outbound.check_url(url)


def test_an_allowed_name_may_resolve_inside(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = ["vllm.internal"]
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", 8000))])
    assert outbound.connect_address(outbound.parse("http://vllm.internal:8000")) == ipaddress.ip_address("10.9.9.9")


# Call time ----------------------------------------------------------------------------------

class Recorder(FakeServer):
    """A server on loopback that records what reaches it; optionally redirects."""

    def __init__(self) -> None:
        self.redirect_to: str | None = None
        super().__init__(self.answer)
        self.start()

    def answer(self, request: Seen) -> Answer:
        if self.redirect_to:
            return Answer(302, headers=(("Location", self.redirect_to),))
        return Answer.json({"status": "OK", "version": "4.0.0", "data": []})

    @property
    def hits(self) -> list[str]:
        return [f"{r.method} {r.path} host={r.headers.get('Host')}" for r in self.seen]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.stop()


def _resolves_to(monkeypatch: pytest.MonkeyPatch, name: str, address: str) -> None:
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_a_name_that_resolves_inside_at_call_time_is_not_connected_to(
        no_allowance: None, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name was public when it was saved, now it answers 127.0.0.1."""
    _resolves_to(monkeypatch, "rebind.example", "127.0.0.1")
    with pytest.raises(LangfuseError, match="resolves to a loopback address") as refused:
        LangfuseClient(f"http://rebind.example:{recorder.port}", "pk", "sk", max_retries=0).check()
    assert refused.value.permanent
    assert notify.post_webhook(f"http://rebind.example:{recorder.port}/hook", {"x": 1}) is False
    assert recorder.hits == []


def test_the_checked_address_is_the_one_connected_to(settings: Any, recorder: Recorder,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    _resolves_to(monkeypatch, "langfuse.example", "127.0.0.1")
    with LangfuseClient(f"http://langfuse.example:{recorder.port}", "pk", "sk", max_retries=0) as client:
        assert client.server().version == "4.0.0"
    assert recorder.hits == [f"GET /api/public/health host=langfuse.example:{recorder.port}"]  # the name is kept


def test_redirects_are_not_followed(settings: Any, recorder: Recorder) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    recorder.redirect_to = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(LangfuseError, match="redirect") as refused:
        LangfuseClient(f"http://127.0.0.1:{recorder.port}", "pk", "sk", max_retries=0).server()
    assert refused.value.permanent
    assert notify.post_webhook(f"http://127.0.0.1:{recorder.port}/hook", {"x": 1}) is False
    assert len(recorder.hits) == 2  # one each, nothing followed


def test_the_policy_transport_refuses_before_any_connection(no_allowance: None) -> None:
    seen: list[httpx.Request] = []
    transport = outbound.PolicyTransport(httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200)))
    with httpx.Client(transport=transport) as client, pytest.raises(outbound.OutboundRefused):
        client.get("http://[::ffff:169.254.169.254]/latest/meta-data/")
    assert seen == []


# What the proxies call is checked again at every push -----------------------------------

@pytest.mark.django_db
def test_rows_saved_before_the_policy_are_not_pushed_to_the_proxies(acme: Any, settings: Any) -> None:
    """The proxies call a deployment's api_base and send the project's Langfuse secret to its
    host without the portal's pinned transport. A row saved before the policy (planted here
    past the API's validation) must not reach them."""
    from evals.models import LangfuseConnection
    from gateway import documents
    from gateway.models import ProviderCredential, RouteDeployment
    from portal import crypto

    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = []
    cred = ProviderCredential.objects.create(
        organization=acme.org, name="planted vllm", provider="openai_compatible",
        settings={"api_base": "http://169.254.169.254/v1"}, secrets_encrypted=crypto.encrypt_json({}))
    RouteDeployment.objects.filter(route=acme.route).update(credential=cred)
    conn = LangfuseConnection(project=acme.project, host="http://10.0.0.7:3000", public_key="pk-lf-planted")
    conn.set_secret_key("sk-lf-planted")
    conn.save()

    entries = [e for e in documents.models_document()["model_list"] if e["model_name"] == acme.route.model_group]
    assert entries and all(e["litellm_params"]["model"] == "portal_unavailable/outbound" for e in entries)
    assert "169.254.169.254" not in json.dumps(entries)
    acme.project.refresh_from_db()
    assert documents.project_document(acme.project)["langfuse"] is None

    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = ["10.0.0.0/8"]  # a platform that allows its network
    acme.project.refresh_from_db()
    assert documents.project_document(acme.project)["langfuse"]["host"] == "http://10.0.0.7:3000"
