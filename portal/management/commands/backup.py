"""python manage.py backup [--output PATH] [--wait-usage SECONDS | --no-wait-usage]

Backs up the database (pg_dump, custom format) after the usage the gateways
streamed into Redis is stored; the gateway's Redis state is not backed up:
`manage.py restore` rebuilds it from the database (portal/backup.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandParser

from portal import backup


class Command(BaseCommand):
    help = "Back up the database (pg_dump -Fc) once the gateway's usage stream is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", type=Path, help="The file to write (default var/backups/<db>-<time>.dump).")
        parser.add_argument("--wait-usage", type=float, default=60.0, metavar="SECONDS",
                            help="How long to wait for the usage consumer to store what is in the stream.")
        parser.add_argument("--no-wait-usage", action="store_true",
                            help="Back up without waiting (usage not yet stored is not in the backup).")

    def handle(self, *args: Any, output: Path | None, wait_usage: float, no_wait_usage: bool, **options: Any) -> None:
        started = time.monotonic()
        backup.pg_env_and_name()  # PostgreSQL, before anything else
        if no_wait_usage:
            self.stdout.write("usage: not waited for (--no-wait-usage)")
        else:
            try:
                self.stdout.write(backup.store_pending_usage(wait_usage))
            except redis.RedisError as exc:
                self.stderr.write(f"usage: Redis unreachable ({type(exc).__name__}): usage it holds and the "
                                  "database does not is not in this backup")
        path, size = backup.dump(output)
        self.stdout.write(f"database: {path} ({size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
        self.stdout.write("Keep PORTAL_ENCRYPTION_KEYS and GATEWAY_SEALING_KEY apart from it: the backup's secrets "
                          "are encrypted with them.")
