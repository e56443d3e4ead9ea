"""The gateway's periodic tasks, in django-celery-beat's database scheduler."""

from django.db import migrations

TASKS = [
    # name, task, every (seconds), queue, expires (seconds)
    ("gateway: retry pushes to the gateway", "gateway.tasks.sync_drain_outbox", 15, "sync", 14),
    ("gateway: re-push state Redis lost", "gateway.tasks.sync_ensure_state", 5, "sync", 4),
    ("gateway: consume usage", "gateway.tasks.usage_consume", 60, "usage", 50),
    ("gateway: purge pushed outbox rows", "gateway.tasks.sync_purge_outbox", 86400, "sync", 3600),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, queue, expires in TASKS:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.update_or_create(name=name, defaults={
            "task": task, "interval": interval, "queue": queue, "expire_seconds": expires, "enabled": True})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[t[0] for t in TASKS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0002_usagedaily_usagerecord"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
