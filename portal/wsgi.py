import os

from django.core.wsgi import get_wsgi_application

from portal.config import load_settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# A missing or malformed setting: its one line on stderr and exit 4, which gunicorn's arbiter takes
# as "App failed to load" and stops (any other code in a worker would be respawned forever).
load_settings_or_exit(4)
application = get_wsgi_application()
