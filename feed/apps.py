from django.apps import AppConfig


class FeedConfig(AppConfig):
    name = "feed"
    verbose_name = "themoon feed"

    def ready(self) -> None:
        from core.events import register_domain
        from feed import consistency, events, handlers, signals

        register_domain(events.DOMAIN, events.partition_key)
        signals.connect()
        handlers.register()
        consistency.register_checks()
