"""Latency histograms in the daily usage rollups (gateway/latency.py), the rollup per project
without keys (UsageProjectDaily), and the indexes the dashboards read by (key, day), (project, day)."""

import django.db.models.deletion
from django.db import migrations, models

BUCKET_FIELDS = [f"latency_b{i:02d}" for i in range(42)]


class Migration(migrations.Migration):

    dependencies = [
        ('gateway', '0006_usage_consumer_overlap'),
        ('portal', '0002_organization_alert_emails_and_more'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageProjectDaily',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('route', models.CharField(max_length=100)),
                ('requests', models.BigIntegerField(default=0)),
                ('errors', models.BigIntegerField(default=0)),
                ('prompt_tokens', models.BigIntegerField(default=0)),
                ('completion_tokens', models.BigIntegerField(default=0)),
                ('cost', models.DecimalField(decimal_places=9, default=0, max_digits=18)),
                ('latency_ms_sum', models.FloatField(default=0)),
                *[(name, models.BigIntegerField(default=0)) for name in BUCKET_FIELDS],
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+',
                                                   to='portal.organization')),
                ('project', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING,
                                              related_name='+', to='portal.project')),
                ('team', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING,
                                           related_name='+', to='portal.team')),
            ],
            options={
                'indexes': [models.Index(fields=['project', 'day'], name='gateway_usa_project_937d78_idx')],
                'constraints': [models.UniqueConstraint(fields=('organization', 'day', 'project', 'team', 'route'),
                                                        name='uniq_usage_project_daily')],
            },
        ),
        *[migrations.AddField(model_name='usagedaily', name=name, field=models.IntegerField(default=0))
          for name in BUCKET_FIELDS],
        migrations.AddIndex(
            model_name='usagedaily',
            index=models.Index(fields=['key', 'day'], name='gateway_usa_key_id_d14ea7_idx'),
        ),
        migrations.AddIndex(
            model_name='usagedaily',
            index=models.Index(fields=['project', 'day'], name='gateway_usa_project_883535_idx'),
        ),
    ]
