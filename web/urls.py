"""The browser client's pages (mounted at / by themoon/urls.py)."""

from django.urls import path

from web import views

app_name = "web"

urlpatterns = [
    path("", views.feed, name="feed"),
    path("login", views.login_page, name="login"),
    path("users/<int:user_id>", views.profile, name="profile"),
    path("chat", views.conversations, name="conversations"),
    path("chat/<int:conversation_id>", views.conversation, name="conversation"),
]
