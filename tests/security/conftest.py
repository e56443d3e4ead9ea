"""The attack suite: a hostile tenant against the real API and real proxies.

Tests that need the proxies take `live_acme` / `live_globex` (tenants in the real stack of
tests/e2e/stack.py, shared with tests/e2e: one stack per session); the others take the plain
`acme` / `globex` of tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.e2e.stack import Stack
from tests.factories import Tenant, make_tenant


@pytest.fixture
def live_acme(stack: Stack) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def live_globex(stack: Stack) -> Tenant:
    return make_tenant("globex", provider_secret="sk-globex-provider-secret")
