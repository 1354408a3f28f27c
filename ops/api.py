"""Operational endpoints: /api/health (the full report) and /api/health/live (liveness)."""

from django.http import HttpRequest
from ninja import Router, Status

from ops.access import ops_only
from ops.health import health_report

router = Router(tags=["ops"])


@router.get(
    "/health", response={200: dict, 403: dict, 503: dict}, summary="Database, Redis, stream lag, consumers"
)
@ops_only
def health(request: HttpRequest):
    report, healthy = health_report()
    return Status(200 if healthy else 503, report)


@router.get("/health/live", response={200: dict}, summary="The process answers (container liveness)")
def live(request: HttpRequest):
    return Status(200, {"status": "ok"})
