"""The web client's pages: a shell each, rendered by Django; their scripts do the rest through the
public API (/api/...) and the chat WebSocket, exactly as any other client would.

A page reads no domain data itself: it only knows who is logged in (the session) and which id the
URL names. Anonymous visitors are sent to the login page.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie

# The scripts send the csrftoken cookie's value as X-CSRFToken on unsafe API calls (session auth).
page = login_required(login_url="web:login")


@page
@ensure_csrf_cookie
def feed(request: HttpRequest) -> HttpResponse:
    return render(request, "web/feed.html", {"page": "feed"})


@page
@ensure_csrf_cookie
def profile(request: HttpRequest, user_id: int) -> HttpResponse:
    return render(request, "web/profile.html", {"page": "profile", "profile_id": user_id})


@page
@ensure_csrf_cookie
def conversations(request: HttpRequest) -> HttpResponse:
    return render(request, "web/conversations.html", {"page": "conversations"})


@page
@ensure_csrf_cookie
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    context = {"page": "conversation", "conversation_id": conversation_id}
    return render(request, "web/conversation.html", context)


@ensure_csrf_cookie
def login_page(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("web:feed")
    return render(request, "web/login.html", {"page": "login"})
