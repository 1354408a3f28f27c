from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "themoon core: caching and events"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the system checks)
        from core.events.recovery import install

        install()  # a cache failure burst makes this process read from the database until recovered
