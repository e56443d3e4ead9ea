"""Tenants of the end-to-end tests live in the real stack (tests/e2e/stack.py)."""

from __future__ import annotations

import pytest

from tests.e2e.stack import MAIL_DIR, Stack, quiesce, start_worker
from tests.factories import Tenant, make_tenant

__all__ = ["MAIL_DIR", "Stack", "quiesce", "start_worker"]


@pytest.fixture
def acme(stack: Stack) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def globex(stack: Stack) -> Tenant:
    return make_tenant("globex", provider_secret="sk-globex-provider-secret")
