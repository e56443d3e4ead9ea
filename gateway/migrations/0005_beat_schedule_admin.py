"""Once seeded the litellm-admin mode's entries of beat's schedule. The schedule is declared in
portal/schedule.py and seeded by `manage.py seed_beat` now; this migration stays in the history
so that databases that applied it migrate cleanly, and does nothing either way."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("gateway", "0004_virtualkey_kind")]
    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
