"""Evaluations' periodic housekeeping, in django-celery-beat's database scheduler."""

from django.db import migrations

NAME = "evals: fail runs whose worker was lost"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=600, period="seconds")
    PeriodicTask.objects.update_or_create(name=NAME, defaults={
        "task": "evals.tasks.fail_stuck_runs", "interval": interval, "queue": "evals", "expire_seconds": 590})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("evals", "0002_schedule_concurrency"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create, remove)]
