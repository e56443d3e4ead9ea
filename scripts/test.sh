#!/usr/bin/env bash
# The test run: the project's checks, then pytest against PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SECRET_KEY=test-secret-key-not-for-production
export PORTAL_ENCRYPTION_KEYS=${PORTAL_ENCRYPTION_KEYS:-dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA=}
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/portal}
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
export LITELLM_LOCAL_MODEL_COST_MAP=True
export DATABASE_CONN_MAX_AGE=0  # live-server threads must not keep sessions open past the test
.venv/bin/ruff check .
.venv/bin/mypy
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'portal'" | grep -q 1 || createdb -h 127.0.0.1 -U postgres portal
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null || { echo "missing migrations" >&2; exit 1; }
exec .venv/bin/pytest "$@"
