"""python manage.py gateway_sync [--check]

Pushes every key, route, budget and project to the gateway again; with
--check, reports what differs without changing anything (exit code 1 on drift)."""

from __future__ import annotations

import sys
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway import sync
from gateway.backends import GatewayError
from gateway.plugin import redisconn


class Command(BaseCommand):
    help = "Push the whole gateway state again, or (--check) report drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="Only report drift; change nothing.")

    def handle(self, *args: Any, check: bool, **options: Any) -> None:
        try:
            self.run(check)
        except (redis.RedisError, OSError) as exc:  # one line saying what to do, not a traceback
            raise CommandError(f"Redis at {redisconn.describe(settings.REDIS_URL)} did not answer "
                               f"({type(exc).__name__}); start it or fix REDIS_URL, then run this again") from None
        except GatewayError as exc:
            raise CommandError(f"the gateway refused or could not be reached: {exc}") from None

    def run(self, check: bool) -> None:
        backend = sync.backend()
        if check:
            problems = backend.drift()
            for line in problems:
                self.stdout.write(line)
            self.stdout.write(f"{len(problems)} difference(s)")
            if problems:
                sys.exit(1)
            return
        backend.push_all()
        self.stdout.write("pushed everything")
