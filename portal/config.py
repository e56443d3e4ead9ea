"""Where the settings come from, and the one-line error when one is missing or malformed.

Order: a variable in the process environment wins; otherwise the env file's line. The env file is
`PORTAL_ENV_FILE` when set (it must exist; `none` reads no file), else `.env` in the checkout, else
`var/demo.env` (written by `make demo`) — the last only for a process not configured otherwise (none of
`CONFIGURED_BY` in its environment), so a configured process (tests, compose, a service unit) never mixes
in the demo's secrets.

A bad setting raises `SettingError` while `portal/settings.py` loads: its message is one line naming
the variable, what is wrong (never its value: it may be a secret) and where to set it. `exit_on_setting_error`
turns it into that line on stderr and a non-zero exit for manage.py, Celery and the WSGI server.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BOOLEANS = {"true", "false", "1", "0", "yes", "no", "on", "off", "y", "n", "t", "f", ""}
DATABASE_ENGINES = {"django.db.backends.postgresql", "django.db.backends.sqlite3"}
# Any of these in the environment: the process is configured; the demo's file is not for it.
CONFIGURED_BY = ("DJANGO_SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
# The example's placeholder: a copied .env that still holds it must not run a production site.
PLACEHOLDER_SECRETS = {"change-me"}


class SettingError(ImproperlyConfigured):
    """A missing or malformed setting: `str()` is the whole one-line message."""

    def __init__(self, variable: str, problem: str, where: str) -> None:
        self.variable = variable
        super().__init__(f"Configuration error: {variable} {problem}; set it {where}. "
                         f"Every setting is described in .env.example.")


def env_file(base_dir: Path, environment: os._Environ[str] | dict[str, str]) -> tuple[Path | None, str]:
    """The env file to read and why it was chosen (for the error message)."""
    named = environment.get("PORTAL_ENV_FILE", "")
    if named.lower() == "none":
        return None, "PORTAL_ENV_FILE=none"
    if named:
        path = Path(named) if os.path.isabs(named) else Path.cwd() / named
        if not path.is_file():
            raise SettingError("PORTAL_ENV_FILE", f"names {named}, which is not a file",
                               "to an existing env file, or unset it to read .env")
        return path, "PORTAL_ENV_FILE"
    if (base_dir / ".env").is_file():
        return base_dir / ".env", ".env"
    demo = base_dir / "var" / "demo.env"
    if demo.is_file() and not any(name in environment for name in CONFIGURED_BY):
        return demo, "the demo's env file (no .env)"
    return None, "no env file"


class Env(environ.Env):
    """django-environ's reader, strict: a bad value is a `SettingError` naming the variable."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__()
        self.base_dir = base_dir
        self.from_process = set(os.environ)
        self.file, self.file_reason = env_file(base_dir, os.environ)
        if self.file is not None:
            self.read_env(str(self.file))

    def where(self, variable: str) -> str:
        if variable in self.from_process:
            return "in the environment, where it is set now (the environment wins over any env file)"
        if self.file is not None:
            return f"in the environment or in {self._shown(self.file)} (read as {self.file_reason})"
        return f"in the environment or in {self._shown(self.base_dir / '.env')} (copy .env.example)"

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base_dir))
        except ValueError:
            return str(path)

    def error(self, variable: str, problem: str) -> SettingError:
        return SettingError(variable, problem, self.where(variable))

    def required(self, variable: str) -> str:
        value = self.str(variable, default="")
        if not value:
            raise self.error(variable, "is not set")
        return value

    def get_value(self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET,
                  parse_default: bool = False) -> Any:
        raw = self.ENVIRON.get(var)
        if cast is bool and raw is not None and raw.strip().lower() not in BOOLEANS:
            raise self.error(var, "must be true or false")
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except SettingError:
            raise
        except ImproperlyConfigured:
            raise self.error(var, "is not set")
        except (ValueError, TypeError) as exc:
            raise self.error(var, f"is malformed ({_kind(cast, exc)})")

    def db_url(self, var: str = environ.Env.DEFAULT_DATABASE_ENV, default: Any = environ.Env.NOTSET,
               engine: str | None = None) -> dict[str, Any]:
        try:
            with warnings.catch_warnings():  # django-environ's warning would print the URL, password and all
                warnings.simplefilter("ignore")
                config = super().db_url(var, default=default, engine=engine)
        except SettingError:
            raise
        except (ValueError, TypeError, KeyError, ImproperlyConfigured):
            config = {}
        if config.get("ENGINE") not in DATABASE_ENGINES:
            raise self.error(var, "is not a database URL the portal can use "
                                  "(postgres://user:password@host:5432/name, or sqlite:///path for the demo)")
        return config

    def email_url(self, var: str = environ.Env.DEFAULT_EMAIL_ENV, default: Any = environ.Env.NOTSET,
                  backend: str | None = None) -> dict[str, Any]:
        try:
            return super().email_url(var, default=default, backend=backend)
        except SettingError:
            raise
        except (ValueError, TypeError, KeyError, ImproperlyConfigured):
            raise self.error(var, "is not an e-mail URL (smtp://user:password@host:587, smtps://..., "
                                  "consolemail://, filemail:///path)")


def _kind(cast: Any, exc: Exception) -> str:
    names = {int: "expected a whole number", float: "expected a number", dict: "expected JSON",
             list: "expected a comma-separated list"}
    if cast in names:
        return names[cast]
    if type(exc).__name__ == "JSONDecodeError":
        return "expected JSON"
    return "could not be parsed"


def load_settings_or_exit(code: int = 2) -> None:
    """Load the settings now; on a `SettingError` print its line to stderr and exit with `code`
    (no traceback: the message says what to do)."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 (loads portal/settings.py)
    except SettingError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        raise SystemExit(code) from None


@contextmanager
def exit_on_setting_error(code: int = 2) -> Iterator[None]:
    """A `SettingError` raised inside (the settings loaded lazily, e.g. by a command) is one line and `code`."""
    try:
        yield
    except SettingError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        raise SystemExit(code) from None
