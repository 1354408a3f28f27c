"""WebSocket routes of the chat app (mounted by themoon/asgi.py)."""

from django.urls import re_path

from chat.consumers import ChatConsumer

websocket_urlpatterns = [
    # At most 18 digits: any such id fits a 64-bit primary key. Without the slash: themoon/routing.py.
    re_path(r"^ws/chat/(?P<conversation_id>[0-9]{1,18})/$", ChatConsumer.as_asgi()),
]
