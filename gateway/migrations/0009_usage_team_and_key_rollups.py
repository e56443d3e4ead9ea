"""Two more rollups, summed from UsageDaily: per team and route (the organization's reports) and per
key (reports by key or user, a project's top keys), filled here from the usage already held; and
the index of the keys page's order."""

import django.db.models.deletion
from django.db import migrations, models

SUMS = "requests, errors, prompt_tokens, completion_tokens, cost, latency_ms_sum"
SUMMED = "sum(requests), sum(errors), sum(prompt_tokens), sum(completion_tokens), sum(cost), sum(latency_ms_sum)"


def fill(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO gateway_usageteamdaily (organization_id, day, team_id, route, {SUMS}) "
                       f"SELECT organization_id, day, team_id, route, {SUMMED} FROM gateway_usagedaily "
                       "GROUP BY organization_id, day, team_id, route")
        cursor.execute(f"INSERT INTO gateway_usagekeydaily (organization_id, day, key_id, team_id, project_id, "
                       f"owner_email, {SUMS}) SELECT organization_id, day, key_id, min(team_id), min(project_id), "
                       f"min(owner_email), {SUMMED} FROM gateway_usagedaily GROUP BY organization_id, day, key_id")


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0008_usage_rollups_backfill'),
        ('portal', '0002_organization_alert_emails_and_more'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageKeyDaily',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('requests', models.BigIntegerField(default=0)),
                ('errors', models.BigIntegerField(default=0)),
                ('prompt_tokens', models.BigIntegerField(default=0)),
                ('completion_tokens', models.BigIntegerField(default=0)),
                ('cost', models.DecimalField(decimal_places=9, default=0, max_digits=18)),
                ('latency_ms_sum', models.FloatField(default=0)),
                ('day', models.DateField()),
                ('owner_email', models.CharField(blank=True, max_length=254)),
                ('key', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='gateway.virtualkey')),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='portal.organization')),
                ('project', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='portal.project')),
                ('team', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='portal.team')),
            ],
            options={
                'indexes': [models.Index(fields=['key', 'day'], name='gateway_usa_key_id_ece2c4_idx'), models.Index(fields=['project', 'day', 'organization', 'key', 'requests', 'cost'], name='usage_key_daily_top_keys')],
                'constraints': [models.UniqueConstraint(fields=('organization', 'day', 'key'), name='uniq_usage_key_daily')],
            },
        ),
        migrations.CreateModel(
            name='UsageTeamDaily',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('requests', models.BigIntegerField(default=0)),
                ('errors', models.BigIntegerField(default=0)),
                ('prompt_tokens', models.BigIntegerField(default=0)),
                ('completion_tokens', models.BigIntegerField(default=0)),
                ('cost', models.DecimalField(decimal_places=9, default=0, max_digits=18)),
                ('latency_ms_sum', models.FloatField(default=0)),
                ('day', models.DateField()),
                ('route', models.CharField(max_length=100)),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='portal.organization')),
                ('team', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='portal.team')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('organization', 'day', 'team', 'route'), name='uniq_usage_team_daily')],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='virtualkey',
            index=models.Index(fields=['organization', '-created_at', '-id'], name='key_list_order'),
        ),
    ]
