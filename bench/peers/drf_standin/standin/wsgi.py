"""What gunicorn serves: `gunicorn standin.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "standin.settings")

application = get_wsgi_application()
