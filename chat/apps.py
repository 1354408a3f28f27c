from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "themoon chat"

    def ready(self) -> None:
        from chat import consistency, events, handlers, signals
        from core.events import register_domain

        register_domain(events.DOMAIN, events.partition_key)
        signals.connect()
        handlers.register()
        consistency.register_checks()
