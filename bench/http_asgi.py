"""bench/http.py's `asgi` candidate: the product on Django's own ASGI handler (how the web process
served HTTP before themoon/asgi.py moved it to the WSGI handler), with the same body limit."""

from django.core.asgi import get_asgi_application

from core.http import asgi_body_limit

application = asgi_body_limit(get_asgi_application())
