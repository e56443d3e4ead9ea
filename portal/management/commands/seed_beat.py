"""python manage.py seed_beat: make Celery beat's database entries match the
portal's declared schedule (portal/schedule.py). Idempotent; run it after
`migrate` on every deployment. Prints what it changed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from portal.schedule import SCHEDULE, schedule_seed


class Command(BaseCommand):
    help = "Create, update and remove the portal's own Celery beat entries to match portal/schedule.py."

    def handle(self, *args: Any, **options: Any) -> None:
        changes = schedule_seed()
        for line in changes:
            self.stdout.write(line)
        self.stdout.write(f"beat schedule: {len(SCHEDULE)} entries, {len(changes)} changed")
