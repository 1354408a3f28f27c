"""The browser client's pages and /api/docs through the test client: they render for the right
visitor, and no page (ours, the docs, the admin) loads anything from another host."""

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.test import Client

from chat.testing import make_conversation
from tests.factories import make_user

URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data", "background"}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)""")
CSS_IMPORT = re.compile(r"""@import\s+['"]([^'"]+)""")


class Links(HTMLParser):
    """Every URL a page makes the browser fetch or follow: attributes, inline styles, <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name in URL_ATTRIBUTES:
                self.urls += (
                    [part.strip().split(" ")[0] for part in value.split(",")] if name == "srcset" else [value]
                )
            elif name == "style":
                self.urls += css_urls(value)

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.urls += css_urls(data)


def css_urls(text: str) -> list[str]:
    return CSS_URL.findall(text) + CSS_IMPORT.findall(text)


def foreign(url: str) -> bool:
    """A URL that would reach another host (or a scheme other than this page's own)."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("data", "blob", "javascript") or url.startswith("#"):
        return False
    return bool(parts.scheme or parts.netloc)


def page_urls(client: Client, path: str) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response["Content-Type"].startswith("text/html")
    parser = Links()
    parser.feed(response.content.decode())
    return parser.urls


@pytest.fixture
def logged_in(db):
    alice, bob = make_user("alice"), make_user("bob")
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client = Client()
    client.force_login(alice)
    return client, alice, bob, make_conversation(alice, bob)


def every_page(alice, bob, conversation) -> list[str]:
    return [
        "/",
        f"/users/{bob.pk}",
        f"/users/{alice.pk}",
        "/chat",
        f"/chat/{conversation.pk}",
        "/api/docs",
        "/admin/",
        "/admin/feed/post/",
    ]


def test_no_page_loads_anything_from_another_host(logged_in):
    client, alice, bob, conversation = logged_in
    pages = {path: page_urls(client, path) for path in every_page(alice, bob, conversation)}
    pages["/login"] = page_urls(Client(), "/login")
    pages["/admin/login/"] = page_urls(Client(), "/admin/login/")
    outside = {path: [url for url in urls if foreign(url)] for path, urls in pages.items()}
    assert outside == {path: [] for path in pages}
    # ...and every asset they name is served here, stylesheets included (their url()s too).
    assets = {url for urls in pages.values() for url in urls if url.startswith("/static/")}
    assert any(url.startswith("/static/ninja/swagger-ui") for url in assets)  # the bundled Swagger UI
    assert any(url.startswith("/static/admin/") for url in assets)
    assert any(url.startswith("/static/web/") for url in assets)
    for url in sorted(assets):
        response = Client().get(url)
        assert response.status_code == 200, url
        if url.endswith(".css"):
            body = b"".join(response.streaming_content).decode()
            assert [u for u in css_urls(body) if foreign(u)] == [], url


def test_docs_page_uses_the_bundled_swagger_ui(logged_in):
    client = logged_in[0]
    body = client.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in body
    assert "cdn" not in body.lower()


@pytest.mark.parametrize("path", ["/", "/chat", "/chat/1", "/users/1"])
def test_pages_send_anonymous_visitors_to_log_in(db, path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={path}"


def test_login_page_sends_a_logged_in_user_to_the_feed(logged_in):
    response = logged_in[0].get("/login")
    assert (response.status_code, response["Location"]) == (302, "/")


def test_pages_know_who_is_logged_in_and_set_the_csrf_cookie(logged_in):
    client, alice, _, conversation = logged_in
    response = client.get(f"/chat/{conversation.pk}")
    body = response.content.decode()
    assert f'data-user-id="{alice.pk}"' in body
    assert f'data-conversation-id="{conversation.pk}"' in body
    assert "csrftoken" in response.cookies


def test_unknown_paths_outside_the_pages_are_still_json_404s(db):
    response = Client().get("/nowhere/at/all")
    assert response.status_code == 404
    assert response.json() == {"detail": "not found"}
