"""Periodic tasks of the litellm-admin mode (they do nothing in managed mode)."""

from django.db import migrations

TASKS = [
    ("gateway: pull spend from LiteLLM (litellm-admin)", "gateway.tasks.sync_pull_spend", 60, "sync", 55),
    ("gateway: delete rotated-out keys in LiteLLM (litellm-admin)", "gateway.tasks.sync_expire_grace", 300, "sync",
     290),
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
    dependencies = [("gateway", "0004_virtualkey_kind")]
    operations = [migrations.RunPython(create, remove)]
