from django.apps import AppConfig


class WebConfig(AppConfig):
    """The browser client at /: server-rendered pages whose scripts use the public API and WebSocket."""

    name = "web"
    verbose_name = "web client"
