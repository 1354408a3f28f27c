"""The refusals a service raises, each with the HTTP status it is answered with.

Services (`<app>/services.py`) raise subclasses of `ServiceError` for a reason the caller can act
on; str() is the message. The API maps every one of them once (the exception handler on the ninja
API object in themoon/api.py answers `{"detail": str(exc)}` with `status`), the WebSocket consumer
turns them into error frames. Anything else is a bug, answered 500.
"""


class ServiceError(Exception):
    """A write refused for a reason the caller can act on; str() is the message."""

    status: int = 400


class InvalidInput(ServiceError):
    """The input is well-formed but not acceptable (a weak password, an unknown participant)."""

    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    """Missing, or not visible to the caller (answered the same way so existence is not revealed)."""

    status = 404


class Conflict(ServiceError):
    status = 409
