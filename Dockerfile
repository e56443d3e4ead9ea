# The portal's image: web, worker, beat (and, if you like, the gateway via `manage.py gateway`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LITELLM_LOCAL_MODEL_COST_MAP=True
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Hashed, compressed static files and their manifest (staticfiles.json); the services run with
# STATIC_MANIFEST=true (docker-compose.yml) so whitenoise serves these names. Build-only keys, no env file.
RUN DJANGO_SECRET_KEY=build PORTAL_ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktMDAwMDAwMDAwMDAwMDAwMDA= \
    PORTAL_ENV_FILE=none STATIC_MANIFEST=true python manage.py collectstatic --noinput -v0
# The metrics directory exists in the image, owned by the user: a new named volume mounted there (compose's
# `metrics`) takes the image's ownership, so the unprivileged processes can write to it.
RUN useradd --create-home portal && mkdir -p /var/run/portal-metrics \
    && chown -R portal /app /var/run/portal-metrics
USER portal
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "-b", "0.0.0.0:8000", "-w", "4", "--access-logfile", "-", \
     "--logger-class", "portal.gunicorn_logging.AccessLogger", \
     "--access-logformat", "%(h)s %(t)s \"%(r)s\" %(s)s %(b)s %(M)sms \"%(a)s\" %({x-request-id}o)s"]
