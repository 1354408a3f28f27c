"""Account writes. Refusals are `core.errors` ServiceErrors, answered by the API's one handler."""

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import AppUser
from core.errors import Conflict, Forbidden, InvalidInput
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


class WrongPassword(Forbidden):
    """The current password given to change it is not the user's (403)."""


def change_password(user_id: int, current_password: str, new_password: str) -> AppUser:
    """Set a new password. Every token of the user dies with the old one (accounts/signals.py), and
    the user's open sockets close. Raises WrongPassword or InvalidInput (a weak new password)."""
    user = AppUser.objects.get(pk=user_id)  # the full row: request.auth carries only a few fields
    if not user.check_password(current_password):
        raise WrongPassword("the current password is wrong")
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from exc
    user.set_password(new_password)
    user.save(update_fields=["password"])
    return user
