"""The HTTP API (django-ninja): each app contributes a router; OpenAPI docs at /api/docs.

A service's refusal (`core.errors.ServiceError`) is answered here, once for every app:
`{"detail": str(exc)}` with the status its class carries. Input that fails validation is a 422
`{"detail": "...", "errors": [{"loc": [...], "msg": "...", "type": "..."}]}` (`ValidationErrorOut`),
where `loc` starts with where the value was sent (`body`, `query`, `path`) and never names the
view's own parameters; the OpenAPI document lists that 422 on every operation that takes input.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import ValidationError

from accounts.api import router as accounts_router
from accounts.api import users_router
from accounts.throttles import write_throttles
from chat.api import router as chat_router
from core.errors import ServiceError
from core.http import require_json_bodies
from feed.api import router as feed_router
from ops.api import router as ops_router


class FieldError(Schema):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(Schema):
    """The body of every 422."""

    detail: str
    errors: list[FieldError]


class ThemoonAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: Any = None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        document_validation_errors(schema)
        return schema


# Every unsafe request of an authenticated user counts against THROTTLE_WRITE_RATE (429 + Retry-After);
# the auth routes carry their own throttles (accounts/throttles.py).
api = ThemoonAPI(title="themoon", version="1.0", urls_namespace="api", throttle=write_throttles)
require_json_bodies(api)  # 415 for a body that is not application/json (login CSRF)
# Django tries URL patterns in order: the feed's routes (the hot reads) first, so a feed request is
# resolved on the first pattern instead of after the other routers' ~16 (~10% of a hot read).
api.add_router("/", feed_router)
api.add_router("/", ops_router)
api.add_router("/", accounts_router)
api.add_router("/", users_router)
api.add_router("/", chat_router)


def service_refused(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=exc.status)


def public_loc(loc: list | tuple) -> list[str | int]:
    """ninja's location of an error in a body is ("body", <the view's parameter>, field...): the
    parameter's name is ours, not the client's, so it is dropped."""
    loc = list(loc)
    if len(loc) >= 2 and loc[0] == "body":
        del loc[1]
    return [part if isinstance(part, int) else str(part) for part in loc]


def invalid_input(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {"loc": public_loc(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors
    ]
    first = errors[0] if errors else None
    where = ".".join(str(part) for part in first["loc"]) if first else ""
    detail = f"invalid input: {where}: {first['msg']}" if first else "invalid input"
    return api.create_response(request, {"detail": detail, "errors": errors}, status=422)


api.add_exception_handler(ServiceError, service_refused)
api.add_exception_handler(ValidationError, invalid_input)

_REF = "#/components/schemas/ValidationErrorOut"


def document_validation_errors(schema: dict) -> None:
    """Add the 422 (ValidationErrorOut) to every operation with parameters or a request body."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ValidationErrorOut"] = ValidationErrorOut.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for key, definition in (
        ValidationErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        .get("$defs", {})
        .items()
    ):
        components[key] = definition
    components["ValidationErrorOut"].pop("$defs", None)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or not (
                operation.get("parameters") or operation.get("requestBody")
            ):
                continue
            operation.setdefault("responses", {})["422"] = {
                "description": "Validation Error",
                "content": {"application/json": {"schema": {"$ref": _REF}}},
            }
