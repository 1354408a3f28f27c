from django.contrib import admin

from core.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ("id", "stream", "created_at")
    readonly_fields = ("stream", "payload", "created_at")
