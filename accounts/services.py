"""Account writes. Refusals are `core.errors` ServiceErrors, answered by the API's one handler."""

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import AppUser
from core.errors import Conflict, InvalidInput
from core.validation import validate_new_username


def register_user(username: str, password: str) -> AppUser:
    """Create an account. Raises InvalidInput (bad username or weak password) or Conflict (taken)."""
    user = AppUser(username=username)
    try:
        validate_new_username(username)
        AppUser.username_validator(username)
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from exc
    if AppUser.objects.filter(username__iexact=username).exists():
        raise Conflict("username already taken")
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # registered concurrently
        raise Conflict("username already taken") from exc
    return user
