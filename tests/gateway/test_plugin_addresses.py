"""One definition of an internal address (gateway/plugin/addresses.py) for the portal's outbound
policy and the gateway's check of the URLs LiteLLM downloads: both refuse the same addresses."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.plugin import urls
from portal import outbound

INTERNAL = ["127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "10.0.0.1",
            "[64:ff9b::10.0.0.1]", "[2002:7f00:1::]", "[fc00::1]", "100.64.0.1", "169.254.169.254", "168.63.129.16",
            "[fd00:ec2::254]", "0.0.0.0", "224.0.0.1", "240.0.0.1", "localhost", "api.localhost",
            "metadata.google.internal", "metadata.tencentyun.com"]


@pytest.fixture
def no_allowance(settings: Any) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = []


@pytest.mark.parametrize("host", INTERNAL)
def test_the_portal_and_the_gateway_refuse_the_same_internal_hosts(no_allowance: None, host: str) -> None:
    with pytest.raises(outbound.OutboundRefused):
        outbound.check_url(f"http://{host}/")
    assert urls.refused(f"http://{host}/x.png") is not None


@pytest.mark.parametrize("host", ["8.8.8.8", "[2606:4700:4700::1111]"])
def test_both_accept_a_public_address(no_allowance: None, host: str) -> None:
    outbound.check_url(f"http://{host}/")
    assert urls.refused(f"http://{host}/x.png") is None
