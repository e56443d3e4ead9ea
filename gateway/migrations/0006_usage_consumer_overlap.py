"""Once changed the usage consumer's beat entry. The schedule is declared in portal/schedule.py
and seeded by `manage.py seed_beat` now (which removes that entry: a worker starts the consumer);
this migration stays in the history so that databases that applied it migrate cleanly, and does
nothing either way."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("gateway", "0005_beat_schedule_admin")]
    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
