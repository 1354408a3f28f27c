from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "themoon chat"

    def ready(self) -> None:
        from chat import handlers, signals

        signals.connect()
        handlers.register()
