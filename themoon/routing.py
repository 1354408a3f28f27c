"""Every WebSocket route of the project (mounted by themoon/asgi.py), and the answer to the rest.

A path no app routes (`/ws/chat/x`, `/ws/nothing`) is refused at the handshake, which the client
sees as an HTTP 403, instead of Channels' "No route found" ValueError (a 500 and a traceback).
"""

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from chat.routing import websocket_urlpatterns as chat_routes


class NoSuchSocket(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close()  # before accept: the handshake is refused


websocket_urlpatterns = [*chat_routes, re_path(r"", NoSuchSocket.as_asgi())]
