"""The WSGI entry point: `application` for any WSGI server, `python wsgi.py` to serve it with
waitress on $HOST:$PORT (see src/web/server.py)."""

from src.settings import Settings
from src.web import server
from src.web.access_log import start_logging
from src.web.app import create_app
from src.web.graceful_exit import exit_on_sigterm

settings = Settings.from_env()
application = create_app(settings)

if __name__ == "__main__":
    start_logging()
    exit_on_sigterm()
    server.serve(application, settings)
