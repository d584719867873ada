"""The WSGI entry for gunicorn: `gunicorn app.wsgi:app`."""

from app.factory import create_app

app = create_app()
