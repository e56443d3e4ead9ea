from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings

from tests.factories import Tenant, make_tenant


@pytest.fixture(autouse=True)
def _clean_redis() -> Any:
    """Every test starts with an empty gateway state in the test Redis db."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.close()


@pytest.fixture
def acme(db: Any) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def globex(db: Any) -> Tenant:
    return make_tenant("globex", provider_secret="sk-globex-provider-secret")
