from django.contrib import admin
from django.urls import include, path

from ops.metrics import metrics_view
from themoon.api import api

urlpatterns = [
    path("api/", api.urls),  # first: every API request is resolved past the patterns before it
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    # The browser client (web/): its pages call the API above like any other client.
    path("", include("web.urls")),
]

# Errors are JSON without internals, for /api/ and every other path (core/http.py).
handler400 = "core.http.bad_request"
handler403 = "core.http.permission_denied"
handler404 = "core.http.page_not_found"
handler500 = "core.http.server_error"
