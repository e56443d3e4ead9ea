"""python manage.py restore PATH [--clean] | --gateway-only

Restores a `manage.py backup` file into the configured database (empty, or
--clean), migrates it, then rebuilds the gateway's state in Redis from it:
the gateway's namespace is emptied (nothing issued after the backup stays
valid) and everything is pushed again, spend counters included (portal/backup.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import backup


class Command(BaseCommand):
    help = "Restore a backup into the database, migrate, and rebuild the gateway's Redis state from it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", type=Path, help="A file written by `manage.py backup`.")
        parser.add_argument("--clean", action="store_true",
                            help="Replace what the backup holds in a database that is not empty.")
        parser.add_argument("--gateway-only", action="store_true",
                            help="Only rebuild the gateway's Redis state from the database (after a restore "
                                 "that could not reach Redis).")

    def handle(self, *args: Any, path: Path | None, clean: bool, gateway_only: bool, **options: Any) -> None:
        started = time.monotonic()
        if not gateway_only:
            if path is None:
                raise CommandError("name the backup file to restore (or --gateway-only)")
            backup.load(path, clean=clean)
            self.stdout.write(f"database: {path} restored")
            call_command("migrate", interactive=False, verbosity=0)
            self.stdout.write("database: migrated")
        try:
            deleted, keys = backup.rebuild_gateway_state()
        except redis.RedisError as exc:
            raise CommandError(f"gateway: Redis unreachable ({type(exc).__name__}): the database is restored; run "
                               "`python manage.py restore --gateway-only` once Redis answers, before the gateways "
                               "serve again (until then they serve what Redis held)") from None
        self.stdout.write(f"gateway: {deleted} Redis key(s) of the old state deleted, everything pushed again "
                          f"({keys} virtual key(s), spend counters from the usage) in {time.monotonic() - started:.1f} s")
