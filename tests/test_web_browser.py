"""The web client in a real browser: Debian's chromium driven by Playwright, against the real ASGI
server (uvicorn, as the Procfile runs it) and the real Celery worker applying the events.

Two browser contexts are two users: they log in, one follows the other from a profile, they chat
live (history, typing, presence), and a new post by one appears in the other's feed. Every request
either page makes stays on the server's own origin. Waits are on DOM state, never sleeps.

Set WEB_TEST_SCREENSHOTS=<dir> to keep a screenshot of each page (for a look, never committed).
"""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.factories import make_user
from tests.subprocesses import uvicorn_server

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is in requirements-dev.txt")
expect = playwright.expect

CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it); Playwright downloads nothing
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pass-word-123"  # tests/factories.py's default
WAIT_MS = 10_000

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (apt install chromium)"
)


@pytest.fixture
def web_server(transactional_db):
    """uvicorn serving themoon.asgi on a free loopback port (as the Procfile does); always stopped."""
    with uvicorn_server() as port:
        yield f"http://127.0.0.1:{port}"


class Visitor:
    """One user's browser context; remembers every URL its pages requested."""

    def __init__(self, browser, base: str, name: str) -> None:
        self.base, self.name = base, name
        self.context = browser.new_context(base_url=base, viewport={"width": 900, "height": 800})
        self.context.set_default_timeout(WAIT_MS)
        self.requested: list[str] = []
        self.context.on("request", lambda request: self.requested.append(request.url))
        self.page = self.context.new_page()
        self.page.on("websocket", lambda ws: self.requested.append(ws.url))
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))

    def log_in(self) -> None:
        page = self.page
        page.goto("/")
        expect(page).to_have_url(f"{self.base}/login?next=/")
        self.snap("login")
        page.fill("#username", self.name)
        page.fill("#password", PASSWORD)
        page.click("#login")
        expect(page).to_have_url(f"{self.base}/")
        expect(page.locator("#nav-me")).to_have_text(f"@{self.name}")

    def snap(self, what: str) -> None:
        folder = os.environ.get("WEB_TEST_SCREENSHOTS")
        if folder:
            self.page.screenshot(path=str(Path(folder) / f"{self.name}-{what}.png"), full_page=True)


def refresh_until_visible(page, locator, attempts: int = 20) -> None:
    """The follower's feed is invalidated by the worker: press Refresh until the post shows."""
    for _ in range(attempts):
        loaded = page.locator("#feed").get_attribute("data-loaded")
        page.click("#feed-refresh")
        expect(page.locator("#feed")).not_to_have_attribute("data-loaded", loaded or "")
        if locator.count():
            return
        expect(locator).to_be_visible(timeout=500)  # a short explicit wait before the next refresh
    expect(locator).to_be_visible()


def test_two_users_follow_chat_live_and_see_each_others_posts(web_server, pipeline_worker):
    ann, bob = make_user("ann"), make_user("bob")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            a, b = Visitor(browser, web_server, "ann"), Visitor(browser, web_server, "bob")
            for visitor in (a, b):
                visitor.log_in()
            expect(b.page.locator("#feed-empty")).to_be_visible()  # bob's (cached) feed: nothing yet
            b.snap("feed-empty")

            # bob follows ann from her profile
            b.page.goto(f"/users/{ann.pk}")
            expect(b.page.locator("#profile-name")).to_have_text("@ann")
            b.page.click("#follow")
            expect(b.page.locator("#follow")).to_have_text("Unfollow")
            expect(b.page.locator("#profile-followers")).to_have_text("1")
            b.snap("profile")

            # ann opens a conversation with bob from his profile; bob finds it in his list
            a.page.goto(f"/users/{bob.pk}")
            a.page.click("#message")
            expect(a.page).to_have_url(re.compile(r"/chat/[0-9]+$"))
            expect(a.page.locator("#chat")).to_have_attribute("data-live", "yes")
            b.page.goto("/chat")
            b.page.locator("#conversations a", has_text="@ann").click()
            expect(b.page.locator("#chat")).to_have_attribute("data-live", "yes")
            expect(a.page.locator("#online")).to_contain_text("@bob")  # presence
            expect(b.page.locator("#online")).to_contain_text("@ann")  # who was here already

            # bob types: ann sees it; bob sends: ann sees the message and the indicator goes
            b.page.locator("#message-body").press_sequentially("hello a")
            expect(a.page.locator("#typing")).to_have_text("@bob is typing…")
            b.page.locator("#message-body").press_sequentially("nn")
            b.page.click("#message-send")
            expect(a.page.locator("#messages .message .text")).to_have_text(["hello ann"])
            expect(a.page.locator("#typing")).to_have_text("")
            a.page.fill("#message-body", "hi bob")
            a.page.press("#message-body", "Enter")
            expect(b.page.locator("#messages .text")).to_have_text(["hello ann", "hi bob"])
            expect(b.page.locator("#messages .message.mine .text")).to_have_text(["hello ann"])
            a.snap("conversation")

            # history: a fresh page gets both messages on connect
            a.page.reload()
            expect(a.page.locator("#messages .text")).to_have_text(["hello ann", "hi bob"])
            b.page.goto("/chat")
            expect(b.page.locator("#conversations")).to_contain_text("hi bob")
            b.snap("conversations")

            # ann posts, reacts and comments; bob, her follower, sees the post with its counts
            a.page.goto("/")
            a.page.fill("#post-body", "first light over the crater")
            a.page.click("#post-submit")
            post = a.page.locator(".post", has_text="first light over the crater")
            expect(post).to_be_visible()
            post.locator('.react[data-kind="love"]').click()
            expect(post.locator('.react[data-kind="love"]')).to_have_text("❤️ 1")
            post.locator(".comment-count").click()
            post.locator(".comment-body").fill("what a view")
            post.locator(".comment-form button").click()
            expect(post.locator(".comment")).to_have_text(["ann what a view"])
            expect(post.locator(".comment-count")).to_have_text("💬 1")
            a.snap("feed")

            b.page.goto("/")
            seen = b.page.locator(".post", has_text="first light over the crater")
            refresh_until_visible(b.page, seen)
            expect(seen.locator(".author")).to_have_text("@ann")
            expect(seen.locator('.react[data-kind="love"]')).to_have_text("❤️ 1")
            b.snap("feed")

            # the API docs render offline, from the bundled Swagger UI
            a.page.goto("/api/docs")
            expect(a.page.locator(".swagger-ui .info .title")).to_contain_text("themoon")
            a.snap("docs")
            b.page.goto("/login")  # a logged-in visitor lands on the feed
            expect(b.page).to_have_url(f"{web_server}/")

            for visitor in (a, b):
                hosts = {urlsplit(url).netloc for url in visitor.requested if not url.startswith("data:")}
                assert hosts == {urlsplit(web_server).netloc}, (visitor.name, sorted(set(visitor.requested)))
                assert visitor.problems == [], (visitor.name, visitor.problems)
        finally:
            browser.close()


def test_a_long_conversation_shows_its_window_then_older_pages(web_server, pipeline_worker):
    from chat.testing import make_conversation, make_message

    ann, bob = make_user("ann"), make_user("bob")
    conversation = make_conversation(ann, bob)
    for number in range(1, 56):
        make_message(conversation, bob if number % 2 else ann, f"line {number}")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            a = Visitor(browser, web_server, "ann")
            a.log_in()
            a.page.goto(f"/chat/{conversation.pk}")
            texts = a.page.locator("#messages .text")
            expect(texts).to_have_count(50)  # the cached window
            expect(texts.first).to_have_text("line 6")
            a.page.click("#chat-older")
            expect(texts).to_have_text([f"line {number}" for number in range(1, 56)])
            expect(a.page.locator("#chat-older")).to_be_hidden()
            assert a.problems == []
            a.page.goto("/chat")  # leave the socket's page: the server then stops without waiting for it
        finally:
            browser.close()
