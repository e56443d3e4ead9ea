"""`manage.py langfuse_connect`: a project connected to a Langfuse project in one
step, its defaults read from the Langfuse stack's env file, against the Langfuse
stand-in; the keys checked, the secret encrypted, audited, pushed to the gateway's
Redis (sealed); bad keys, an unknown project and another organization's project refused."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command

from evals.models import LangfuseConnection
from gateway.plugin import contract
from portal.models import AuditLogEntry
from tests.factories import Tenant
from tests.langfuse_standin import LangfuseStandin
from tests.langfuse_standin.fixtures import PUBLIC_KEY, SECRET_KEY

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def stack_env(tmp_path: Path, host: str, public_key: str = PUBLIC_KEY, secret_key: str = SECRET_KEY) -> Path:
    """An env file as stacks/langfuse/.env.example has it, filled in."""
    path = tmp_path / "langfuse.env"
    path.write_text(f"# the stack's keys\nPORTAL_LANGFUSE_HOST={host}\nLANGFUSE_INIT_PROJECT_PUBLIC_KEY={public_key}\n"
                    f"LANGFUSE_INIT_PROJECT_SECRET_KEY=\"{secret_key}\"\nLANGFUSE_INIT_USER_PASSWORD=unused\n")
    return path


def connect(*args: str, env_file: Path | None = None) -> str:
    out = StringIO()
    extra = ["--env-file", str(env_file)] if env_file else []
    call_command("langfuse_connect", *args, *extra, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)  # committed as the command commits, so the push runs on commit
def test_connects_from_the_stacks_env_file_encrypted_audited_and_pushed(
        acme: Tenant, langfuse_standin: LangfuseStandin, tmp_path: Path) -> None:
    out = connect("acme", acme.project.name, env_file=stack_env(tmp_path, langfuse_standin.url))
    assert "Connected project 'acme-assistant'" in out and "'Project 1'" in out and "the gateway has it" in out
    conn = LangfuseConnection.objects.get(project=acme.project)
    assert conn.host == langfuse_standin.url and conn.public_key == PUBLIC_KEY
    assert SECRET_KEY not in conn.secret_encrypted and conn.secret_key() == SECRET_KEY
    entry = AuditLogEntry.objects.get(action="langfuse.create")
    assert entry.actor_label == "manage.py langfuse_connect" and (entry.after or {})["secret_key"] == "********"
    # the gateway's project document names the Langfuse target, its secret sealed
    raw = redis.Redis.from_url(settings.REDIS_URL).get(contract.project_doc(acme.project.pk))
    assert raw is not None and SECRET_KEY.encode() not in raw
    target = json.loads(raw)["langfuse"]
    assert target["host"] == langfuse_standin.url and target["public_key"] == PUBLIC_KEY


def test_options_win_over_the_env_file_and_the_project_is_found_by_id(
        acme: Tenant, langfuse_standin: LangfuseStandin, tmp_path: Path) -> None:
    langfuse_standin.add_project("p2", "Project 2", "pk-lf-two", "sk-lf-two")
    env_file = stack_env(tmp_path, "http://langfuse-web.invalid:3000")
    connect("acme", str(acme.project.pk), "--host", langfuse_standin.url, "--public-key", "pk-lf-two",
            "--secret-key", "sk-lf-two", env_file=env_file)
    conn = LangfuseConnection.objects.get(project=acme.project)
    assert conn.langfuse_project_name == "Project 2" and conn.secret_key() == "sk-lf-two"


def test_bad_keys_are_refused_and_nothing_is_stored(acme: Tenant, langfuse_standin: LangfuseStandin,
                                                    tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="rejected the keys"):
        connect("acme", acme.project.name, env_file=stack_env(tmp_path, langfuse_standin.url, secret_key="nope"))
    assert not LangfuseConnection.objects.exists() and not AuditLogEntry.objects.filter(
        action__startswith="langfuse.").exists()


def test_unknown_projects_and_another_organizations_project_are_not_found(
        acme: Tenant, globex: Tenant, langfuse_standin: LangfuseStandin, tmp_path: Path) -> None:
    env_file = stack_env(tmp_path, langfuse_standin.url)
    for org, ref in (("acme", "no-such-project"), ("acme", "999999"), ("acme", "9" * 40),
                     ("globex", acme.project.name), ("globex", str(acme.project.pk)), ("acme", "a\x00b")):
        with pytest.raises(CommandError, match="has no project"):
            connect(org, ref, env_file=env_file)
    with pytest.raises(CommandError, match="no organization 'initech'"):
        connect("initech", acme.project.name, env_file=env_file)
    assert not LangfuseConnection.objects.exists()


def test_the_outbound_policy_applies(acme: Tenant, langfuse_standin: LangfuseStandin, tmp_path: Path,
                                     settings: Any) -> None:
    """A Langfuse on an internal address is connected only where the platform allows it."""
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(CommandError, match="PORTAL_OUTBOUND_ALLOWED_NETWORKS"):
        connect("acme", acme.project.name, env_file=stack_env(tmp_path, langfuse_standin.url))
    assert not LangfuseConnection.objects.exists()


def test_missing_keys_name_the_options(acme: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    with pytest.raises(CommandError, match="--public-key and --secret-key"):
        connect("acme", acme.project.name, env_file=empty)
    with pytest.raises(CommandError, match="Cannot read"):
        connect("acme", acme.project.name, env_file=tmp_path / "missing.env")


def test_an_error_is_one_line_and_exit_1_from_the_shell(tmp_path: Path) -> None:
    """As a user runs it: no traceback, one line on stderr, non-zero exit."""
    done = subprocess.run([sys.executable, "manage.py", "langfuse_connect", "acme", "x", "--env-file",
                           str(tmp_path / "missing.env")], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Cannot read" in lines[0] and "Traceback" not in done.stderr
