"""Receivers at the edge: a user whose displayed fields changed publishes `user.updated`, in the
save's transaction. Connected in AccountsConfig.ready(); what the event does to the caches lives in
the handlers of the apps that show users (chat, feed).
"""

from django.db.models.signals import post_save, pre_save

from accounts import events
from accounts.models import AppUser
from core.events import publish


def _may_change_displayed(update_fields) -> bool:
    return update_fields is None or bool(set(update_fields) & set(events.DISPLAYED_FIELDS))


def user_saving(*, instance: AppUser, raw: bool, using: str, update_fields=None, **kwargs) -> None:
    """Remember the displayed fields as committed, locked (AppUser.save is atomic), so the
    comparison after the save is exact. A login's last_login save costs no query."""
    instance._displayed_before = None
    if raw or instance._state.adding or not _may_change_displayed(update_fields):
        return
    instance._displayed_before = (
        AppUser._base_manager.using(using)
        .select_for_update()
        .filter(pk=instance.pk)
        .values_list(*events.DISPLAYED_FIELDS)
        .first()
    )


def user_saved(*, instance: AppUser, created: bool, raw: bool, using: str, **kwargs) -> None:
    before = getattr(instance, "_displayed_before", None)
    instance._displayed_before = None
    if created or raw or before is None:
        return
    after = tuple(getattr(instance, name) for name in events.DISPLAYED_FIELDS)
    changed = [
        name for name, old, new in zip(events.DISPLAYED_FIELDS, before, after, strict=True) if old != new
    ]
    if changed:
        publish(events.user_updated(instance.pk, instance.username, changed), events.DOMAIN, using)


RECEIVERS = [
    (pre_save, AppUser, user_saving),
    (post_save, AppUser, user_saved),
]


def connect() -> None:
    for signal, sender, receiver in RECEIVERS:
        signal.connect(receiver, sender=sender, dispatch_uid=f"accounts.{receiver.__name__}")
