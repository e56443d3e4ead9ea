"""Usage consumers overlap a little (each reads for 58 s, beat starts one every
50 s), so that usage never waits for the next one to start."""

from django.db import migrations

NAME = "gateway: consume usage"


def update(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=50, period="seconds")
    PeriodicTask.objects.filter(name=NAME).update(interval=interval, expire_seconds=45)


def back(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.filter(name=NAME).update(interval=interval, expire_seconds=50)


class Migration(migrations.Migration):
    dependencies = [("gateway", "0005_beat_schedule_admin")]
    operations = [migrations.RunPython(update, back)]
