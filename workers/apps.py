from django.apps import AppConfig
from django.conf import settings


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "themoon workers: stream consumers and tasks"

    def ready(self) -> None:
        from core.events import add_commit_listener
        from workers.registry import registry

        if settings.EVENTS_APPLY_ON_COMMIT:
            add_commit_listener(registry.queue_effects)
