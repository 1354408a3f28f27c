from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "themoon chat"

    def ready(self) -> None:
        from chat import consistency, handlers, signals

        signals.connect()
        handlers.register()
        consistency.register_checks()
