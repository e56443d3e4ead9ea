from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings

from tests.factories import Tenant, make_tenant

# The `langfuse_standin` fixture everywhere; the end-to-end stack for tests/e2e and tests/security.
pytest_plugins = ["tests.langfuse_standin.fixtures", "tests.e2e.stack"]


@pytest.fixture(autouse=True)
def _clean_redis() -> Any:
    """Every test starts with an empty gateway state in the test Redis db."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.close()


# The Langfuse and LLM stand-ins listen on 127.0.0.1: the tests allow loopback the way a platform
# allows its internal network (portal/outbound.py); the attack tests switch the allowance off.
OUTBOUND_ALLOWED_IN_TESTS = ["127.0.0.0/8", "::1/128", "localhost"]


@pytest.fixture(autouse=True)
def _outbound_allows_loopback(settings: Any) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = OUTBOUND_ALLOWED_IN_TESTS


@pytest.fixture
def acme(db: Any) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def globex(db: Any) -> Tenant:
    return make_tenant("globex", provider_secret="sk-globex-provider-secret")


@pytest.fixture(scope="session", autouse=True)
def _end_stray_db_sessions(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """Threads of the live server (and killed subprocesses) can leave sessions on
    the test database; end them so it can be dropped at the end of the run."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
