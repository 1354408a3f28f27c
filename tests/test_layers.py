"""Who may import whom: chat knows nothing of feed, users come from accounts, and the layer words
(queries: DB reads, selectors: cache + queries, services: writes) mean one thing in every app."""

import ast
from pathlib import Path

import pytest

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def chat_files() -> list[Path]:
    files = [p for p in (ROOT / "chat").rglob("*.py") if "migrations" not in p.parts]
    return files + sorted((ROOT / "tests").glob("test_chat_*.py")) + [ROOT / "bench" / "chat.py"]


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", chat_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_chat_imports_nothing_from_feed(path):
    assert not [m for m in imported_modules(path) if _is_under(m, "feed")]


@pytest.mark.parametrize("app", ["chat", "feed"])
def test_apps_reach_users_only_through_accounts_public_names(app):
    """Models come from get_user_model() / AUTH_USER_MODEL; only accounts.auth (authentication)
    and accounts.events (the user.updated contract) are imported."""
    for path in (ROOT / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for module in imported_modules(path):
            if _is_under(module, "accounts"):
                public = _is_under(module, "accounts.auth") or _is_under(module, "accounts.events")
                assert public, f"{path} imports {module}"


@pytest.mark.parametrize("app", ["chat", "feed"])
def test_queries_read_the_database_only(app):
    imports = imported_modules(ROOT / app / "queries.py")
    assert not [m for m in imports if m.endswith((".cache", ".selectors", ".services"))]


def test_the_chat_cache_fills_from_queries_not_selectors():
    """chat/cache.py <-> chat/selectors.py was an import cycle; the cache fills from queries."""
    assert "chat.queries" in imported_modules(ROOT / "chat" / "cache.py")
    assert not [m for m in imported_modules(ROOT / "chat" / "cache.py") if _is_under(m, "chat.selectors")]


def test_every_service_refusal_carries_its_http_status():
    from chat.services import ConversationNotFound, InvalidChatInput

    statuses = {InvalidInput: 400, Forbidden: 403, NotFound: 404, Conflict: 409}
    statuses |= {InvalidChatInput: 400, ConversationNotFound: 404}
    for error, status in statuses.items():
        assert issubclass(error, ServiceError)
        assert error.status == status


def test_no_view_maps_service_errors_itself():
    """The exception handler on the API object (themoon/api.py) answers every refusal."""
    for app in ("accounts", "chat", "feed"):
        tree = ast.parse((ROOT / app / "api.py").read_text())
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.Try)], f"{app}/api.py"
