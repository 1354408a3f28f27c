# One image for web, worker, beat and migrate (docker-compose.yml picks the command).
# web: uvicorn on themoon.asgi, HTTP on Django's WSGI handler in threads, WebSockets on Channels (README, Processes).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_DEBUG=false

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. Only the product's own set
# (requirements.txt): tests, benches and lint live in requirements-dev.txt.
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --create-home --uid 1000 app
COPY --chown=app:app . .
# Static files into the image (STATIC_ROOT=/app/staticfiles): WhiteNoise serves them from there.
# The key only lets the settings load for this one command; it is not the image's key.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0
# Celery beat writes its schedule file under .run/.
RUN mkdir -p .run && chown app:app .run

USER app
EXPOSE 8000
CMD ["uvicorn", "themoon.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--lifespan", "off", \
     "--timeout-keep-alive", "5", "--limit-concurrency", "1000", "--ws-max-size", "1048576", "--no-server-header"]
