"""Once seeded the gateway's entries of beat's schedule. The schedule is declared in
portal/schedule.py and seeded by `manage.py seed_beat` now; this migration stays in the history
so that databases that applied it migrate cleanly, and does nothing either way."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0002_usagedaily_usagerecord"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
