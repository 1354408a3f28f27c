from django.apps import AppConfig


class FeedConfig(AppConfig):
    name = "feed"
    verbose_name = "themoon feed"

    def ready(self) -> None:
        from feed import consistency, handlers, signals

        signals.connect()
        handlers.register()
        consistency.register_checks()
