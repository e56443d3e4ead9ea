"""Commands work where a user types them: `manage.py`, `celery` and gunicorn, run as processes from a
checkout, find their settings (the environment, `PORTAL_ENV_FILE`, `.env`, then the demo's `var/demo.env`),
and a missing or malformed setting is one line on stderr naming the variable and where to set it, a
non-zero exit, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from portal.models import Membership

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CONFIG = ("DJANGO_SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL", "PORTAL_ENV_FILE",
          "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
FERNET = "dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA="


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's code (its own var/ and .env, so the real checkout's are never touched)."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("portal", "gateway", "evals"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "vendor"))
    shutil.copy(ROOT / "manage.py", root / "manage.py")
    (root / "var").mkdir()
    return root


@pytest.fixture
def clean(checkout: Path) -> Path:
    for path in (checkout / ".env", checkout / "var" / "demo.env"):
        path.unlink(missing_ok=True)
    return checkout


def bare_env(**extra: str) -> dict[str, str]:
    """The environment of a new shell: none of the portal's settings."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG}
    return {**env, "PYTHONPATH": "", **extra}


def run(cwd: Path, *argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env if env is not None else bare_env(), capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line(result: subprocess.CompletedProcess, variable: str, where: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = {line for line in result.stderr.splitlines() if "Configuration error" in line}
    assert len(lines) == 1, result.stderr  # one line (a process per gunicorn worker may each print it)
    line = lines.pop()
    assert f"Configuration error: {variable} " in line and where in line, line


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_the_readme_command_works_with_the_demo_env_file_and_nothing_else(clean: Path) -> None:
    (clean / "var" / "demo.env").write_text(
        f"DJANGO_SECRET_KEY=demo-secret\nPORTAL_ENCRYPTION_KEYS={FERNET}\nDATABASE_URL={database_url()}\n"
        f"REDIS_URL={os.environ.get('REDIS_URL', 'redis://127.0.0.1:6379/1')}\n")
    result = run(clean, PYTHON, "manage.py", "bootstrap_org", "acme", "--owner", "owner@acme.test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("lpt_")
    assert Membership.objects.get(organization__slug="acme").user.email == "owner@acme.test"


def test_without_any_settings_a_command_says_which_variable_and_where(clean: Path) -> None:
    result = run(clean, PYTHON, "manage.py", "bootstrap_org", "acme", "--owner", "owner@acme.test")
    assert_one_line(result, "DJANGO_SECRET_KEY", "is not set; set it in the environment or in .env")
    assert result.returncode == 2


def test_a_setting_missing_from_the_env_file_names_that_file(clean: Path) -> None:
    (clean / "var" / "demo.env").write_text("DJANGO_SECRET_KEY=demo-secret\n")
    result = run(clean, PYTHON, "manage.py", "check")
    assert_one_line(result, "PORTAL_ENCRYPTION_KEYS", "var/demo.env (read as the demo's env file")


def test_dotenv_comes_before_the_demo_file_and_the_environment_before_both(clean: Path) -> None:
    (clean / "var" / "demo.env").write_text(f"DJANGO_SECRET_KEY=demo\nPORTAL_ENCRYPTION_KEYS={FERNET}\n")
    (clean / ".env").write_text(f"DJANGO_SECRET_KEY=dotenv\nPORTAL_ENCRYPTION_KEYS={FERNET}\nLOG_LEVEL=WARNING\n")
    show = ["manage.py", "shell", "--no-imports", "-c", "from django.conf import settings; print(settings.SECRET_KEY, settings.LOG_LEVEL)"]
    assert run(clean, PYTHON, *show).stdout.split() == ["dotenv", "WARNING"]
    assert run(clean, PYTHON, *show, env=bare_env(LOG_LEVEL="ERROR")).stdout.split() == ["dotenv", "ERROR"]
    (clean / ".env").unlink()
    assert run(clean, PYTHON, *show).stdout.split() == ["demo", "INFO"]
    # A process configured by its environment (tests, compose, a service) never mixes in the demo's secrets.
    result = run(clean, PYTHON, *show, env=bare_env(DJANGO_SECRET_KEY="own"))
    assert_one_line(result, "PORTAL_ENCRYPTION_KEYS", "or in .env (copy .env.example)")


def test_portal_env_file_names_the_file_and_must_exist(clean: Path, tmp_path: Path) -> None:
    named = tmp_path / "prod.env"
    named.write_text(f"DJANGO_SECRET_KEY=named\nPORTAL_ENCRYPTION_KEYS={FERNET}\nDATA_UPLOAD_MAX_MEMORY_SIZE=lots\n")
    result = run(clean, PYTHON, "manage.py", "check", env=bare_env(PORTAL_ENV_FILE=str(named)))
    assert_one_line(result, "DATA_UPLOAD_MAX_MEMORY_SIZE", f"is malformed (expected a whole number); set it in "
                                                           f"the environment or in {named} (read as PORTAL_ENV_FILE)")
    result = run(clean, PYTHON, "manage.py", "check", env=bare_env(PORTAL_ENV_FILE=str(tmp_path / "missing.env")))
    assert_one_line(result, "PORTAL_ENV_FILE", "which is not a file")


@pytest.mark.parametrize("variable,value,problem", [
    ("DATABASE_URL", "mysql-ish://user:hunter2-secret@db/x", "is not a database URL the portal can use"),
    ("PORTAL_ENCRYPTION_KEYS", "hunter2-secret", "is not a Fernet key"),
    ("DJANGO_DEBUG", "ture", "must be true or false"),
    ("OIDC_ORG_MAP", "{hunter2-secret", "is malformed (expected JSON)"),
    ("LOG_FORMAT", "xml", "must be plain or json"),
    ("GATEWAY_SEALING_KEY", "hunter2-secret", "shorter than 32 characters"),
])
def test_a_malformed_setting_is_named_without_its_value(clean: Path, variable: str, value: str, problem: str) -> None:
    env = bare_env(**{"DJANGO_SECRET_KEY": "x", "PORTAL_ENCRYPTION_KEYS": FERNET, variable: value})
    result = run(clean, PYTHON, "manage.py", "check", env=env)
    assert_one_line(result, variable, problem)
    assert "where it is set now" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout  # the value may be a secret: never echoed


def test_celery_worker_and_beat_say_it_in_one_line(clean: Path) -> None:
    for command in (["worker", "--pool", "solo"], ["beat"]):
        result = run(clean, PYTHON, "-m", "celery", "-A", "portal", *command)
        assert_one_line(result, "DJANGO_SECRET_KEY", "is not set")
    result = run(clean, str(Path(PYTHON).parent / "celery"), "-A", "portal", "inspect", "ping")
    assert_one_line(result, "DJANGO_SECRET_KEY", "is not set")


def test_gunicorn_stops_with_one_line_instead_of_restarting_workers(clean: Path) -> None:
    # One worker: when several fail in the same instant, gunicorn 23's arbiter raises its HaltServer inside its
    # SIGCHLD handler and prints its own traceback after our line (a race of gunicorn's, not of the settings).
    result = run(clean, PYTHON, "-m", "gunicorn", "portal.wsgi", "-b", "127.0.0.1:0", "-w", "1", timeout=30)
    assert_one_line(result, "DJANGO_SECRET_KEY", "is not set")
    assert "App failed to load" in result.stderr  # the arbiter stops: no loop of failing workers
    assert result.returncode != 0
