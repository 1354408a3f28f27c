"""Receivers at the edge: each turns a user or token change into an event (accounts/events.py), in
the change's transaction. Connected in AccountsConfig.ready().

A deleted token publishes `token.revoked`. A saved user whose password changed (any `set_password`
+ `save`; not a hash upgrade) loses every token and publishes `user.password_changed`; one that
became inactive publishes `user.deactivated`; one whose displayed fields changed publishes
`user.updated`. Bulk `QuerySet.update()` sends no signal: it is seen only when the cached entry
expires (AUTH_TOKEN_CACHE_SECONDS), so deactivate and rename users with `save()`.
"""

from django.contrib.auth.hashers import is_password_usable
from django.db.models.signals import post_delete, post_save, pre_save

from accounts import events, tokens
from accounts.models import AppUser, AuthToken
from core.events import publish

# The fields whose change ends or alters access, or alters what others show; a save naming none of
# them is not looked at (a login's last_login save costs no query).
WATCHED = ("is_active", "password", *events.DISPLAYED_FIELDS)


def token_deleted(*, instance: AuthToken, using: str, **kwargs) -> None:
    publish(events.token_revoked(instance.pk, instance.user_id, instance.digest), events.DOMAIN, using)


def user_saving(*, instance: AppUser, raw: bool, using: str, update_fields=None, **kwargs) -> None:
    """Remember what the row holds before this save, locked (AppUser.save is atomic), so the
    comparison after the save is exact and a concurrent message or post reads the name after it."""
    instance._before_save = None
    if raw or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not set(WATCHED).intersection(update_fields):
        return
    row = AppUser._base_manager.using(using).select_for_update().filter(pk=instance.pk).values_list(*WATCHED)
    instance._before_save = row.first()


def user_saved(*, instance: AppUser, created: bool, raw: bool, using: str, **kwargs) -> None:
    before = getattr(instance, "_before_save", None)
    instance._before_save = None
    if created or raw or before is None:
        return
    is_active, password, *displayed = before
    if _password_changed(instance, password):
        tokens.revoke_all(instance.pk)
        publish(events.user_password_changed(instance.pk), events.DOMAIN, using)
    if is_active and not instance.is_active:
        publish(events.user_deactivated(instance.pk), events.DOMAIN, using)
    changed = [
        name
        for name, old in zip(events.DISPLAYED_FIELDS, displayed, strict=True)
        if getattr(instance, name) != old
    ]
    if changed:
        publish(events.user_updated(instance.pk, instance.username, changed), events.DOMAIN, using)


def _password_changed(user: AppUser, before: str) -> bool:
    """set_password() was called (Django's own test: a hash upgrade on login clears `_password`, and
    is no change), or the password was made unusable."""
    if user._password is not None:
        return True
    return user.password != before and not is_password_usable(user.password)


RECEIVERS = [
    (post_delete, AuthToken, token_deleted),
    (pre_save, AppUser, user_saving),
    (post_save, AppUser, user_saved),
]


def connect() -> None:
    for signal, sender, receiver in RECEIVERS:
        signal.connect(receiver, sender=sender, dispatch_uid=f"accounts.{receiver.__name__}")
