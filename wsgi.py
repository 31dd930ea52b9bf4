"""The WSGI entry point: `application` for any WSGI server, `python wsgi.py` to serve it with
waitress on $HOST:$PORT (see src/server.py)."""

import logging

from src import server
from src.app import create_app
from src.graceful_exit import exit_on_sigterm
from src.settings import Settings

settings = Settings.from_env()
application = create_app(settings)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_on_sigterm()
    server.serve(application, settings)
