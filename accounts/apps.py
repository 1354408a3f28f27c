from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "themoon accounts"

    def ready(self) -> None:
        from accounts import events, handlers, signals
        from core.events import register_domain

        register_domain(events.DOMAIN, events.partition_key)
        signals.connect()
        handlers.register()
