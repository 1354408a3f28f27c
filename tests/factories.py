"""Plain factory functions for tests and benchmarks."""

import itertools

from accounts.models import AppUser
from feed.models import Post

_seq = itertools.count(1)


def make_user(username: str | None = None, password: str = "pass-word-123") -> AppUser:
    name = username or f"user{next(_seq)}"
    return AppUser.objects.create_user(username=name, password=password)


def make_post(author: AppUser | None = None, body: str = "hello moon") -> Post:
    return Post.objects.create(author=author or make_user(), body=body)
