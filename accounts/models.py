"""Who uses themoon: the user model and the bearer tokens of non-browser clients.

Both tables were created by the feed app and keep their names (`db_table`): the move to this app
changed Django's migration state only (see accounts/migrations/0001_initial.py).
"""

from django.contrib.auth.models import AbstractUser
from django.db import models, router, transaction


class AppUser(AbstractUser):
    bio = models.CharField(max_length=280, blank=True)

    class Meta:
        db_table = "feed_appuser"

    def save(self, *args, **kwargs):
        """Atomic, so a rename and its `user.updated` outbox row commit together (accounts/signals.py)."""
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            super().save(*args, **kwargs)


class AuthToken(models.Model):
    """A bearer token for non-browser clients (API and WebSocket). Only its SHA-256 is stored.

    It works until `expires_at` (AUTH_TOKEN_TTL_DAYS after it was issued), until its owner revokes
    it, or until the owner's password changes (every token of the user is deleted then).
    `last_used_at` is written at most once a minute (accounts/tokens.py), never per request.
    """

    user = models.ForeignKey(AppUser, on_delete=models.CASCADE, related_name="auth_tokens")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "feed_authtoken"

    def __str__(self) -> str:
        return f"token of {self.user_id}"
