from django.contrib import admin
from django.urls import path

from ops.metrics import metrics_view
from themoon.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("metrics", metrics_view, name="metrics"),
]
