"""Sign-in and password reset are throttled per account and per client address (portal/throttle.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.core import mail
from django.test import Client

from tests.factories import Tenant

PASSWORD = "pw-for-tests-1234"


def attempt(client: Client, username: str, password: str) -> Any:
    return client.post("/login/", {"username": username, "password": password})


@pytest.mark.django_db
def test_too_many_failed_sign_ins_lock_the_account_for_a_while_even_with_the_right_password(
        acme: Tenant, settings: Any) -> None:
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    owner, member = acme.users["owner"], acme.users["member"]
    for user in (owner, member):
        user.set_password(PASSWORD)
        user.save()
    client = Client()
    for _ in range(3):
        answer = attempt(client, owner.username, "wrong guess")
        assert answer.status_code == 200 and "password is wrong" in answer.content.decode()
    locked = attempt(client, owner.username, PASSWORD)  # the right one, too late
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0 and "_auth_user_id" not in client.session
    # Another account from the same address is not locked (the address has its own, higher limit).
    assert attempt(Client(), member.username, PASSWORD).status_code == 302
    # Counted under a hash: the e-mail is not in Redis.
    keys = redis.Redis.from_url(settings.REDIS_URL).keys("portal:throttle:*")
    assert keys and not any(owner.username.encode() in k for k in keys)


@pytest.mark.django_db
def test_a_successful_sign_in_clears_the_accounts_failures(acme: Tenant, settings: Any) -> None:
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    owner = acme.users["owner"]
    owner.set_password(PASSWORD)
    owner.save()
    for _ in range(2):
        attempt(Client(), owner.username, "wrong guess")
    assert attempt(Client(), owner.username, PASSWORD).status_code == 302
    for _ in range(2):
        attempt(Client(), owner.username, "wrong guess")
    assert attempt(Client(), owner.username, PASSWORD).status_code == 302  # 4 failures, never 3 in a row


@pytest.mark.django_db
def test_one_address_guessing_many_accounts_is_stopped(acme: Tenant, settings: Any) -> None:
    settings.LOGIN_FAILURES_PER_ADDRESS = 4
    owner = acme.users["owner"]
    owner.set_password(PASSWORD)
    owner.save()
    for i in range(4):
        attempt(Client(), f"someone{i}@acme.test", "guess")
    assert attempt(Client(), owner.username, PASSWORD).status_code == 429
    assert attempt(Client(REMOTE_ADDR="10.9.9.9"), owner.username, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_password_reset_mails_are_limited_and_the_page_says_the_same(acme: Tenant, settings: Any) -> None:
    settings.PASSWORD_RESETS_PER_ACCOUNT = 2
    owner = acme.users["owner"]
    owner.set_password(PASSWORD)  # Django mails only accounts with a usable password
    owner.save()
    answers = [Client().post("/password/reset/", {"email": owner.email}) for _ in range(5)]
    assert [a.status_code for a in answers] == [302] * 5
    assert len({a["Location"] for a in answers}) == 1
    assert len([m for m in mail.outbox if owner.email in m.to]) == 2
