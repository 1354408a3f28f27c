"""The module graph of non-test code: no import cycles (lazy, function-level imports included), and
`core` names no app. Read from the source (ast), so an import that only runs on some path counts."""

import ast
from pathlib import Path

import django
import pytest
from django.core import checks

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "feed", "chat", "workers", "ops", "accounts", "themoon")
APPS = ("feed", "chat", "workers", "accounts")


# Being removed on another branch (chat/selectors.py -> chat/queries.py, issue 10 item 9). Delete the
# entry when that lands: test_known_cycles_are_still_cycles fails until you do.
def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imports(name: str, path: Path) -> set[str]:
    """Every module name `path` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph = {}
    for name, path in modules.items():
        graph[name] = {dep for t in _imports(name, path) if (dep := resolve(t)) and dep != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_non_test_code_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_lazy_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_core_imports_no_app():
    offenders = {
        name: sorted(dep for dep in deps if dep.split(".")[0] in APPS)
        for name, deps in _graph().items()
        if name.split(".")[0] == "core"
    }
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_core_names_no_app_in_its_strings():
    """No app name as a value (a domain, a module path) under core/: apps register themselves."""
    hits = []
    for name, path in _modules().items():
        if name.split(".")[0] != "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if value in APPS or value.startswith(tuple(f"{app}." for app in APPS)):
                    hits.append((name, value))
    assert hits == []


def test_apps_register_their_stream_domains():
    from core.events.streams import domains

    assert set(domains()) >= {"feed", "chat"}


def test_the_tested_django_passes_the_version_check():
    assert django.VERSION[:2] == (5, 2)
    from core.checks import check_django_version

    assert check_django_version() == []


def test_an_untested_django_fails_the_version_check_loudly(monkeypatch):
    from core.checks import check_django_version

    monkeypatch.setattr(django, "VERSION", (6, 0, 0, "final", 0))
    errors = check_django_version()
    assert [error.id for error in errors] == ["core.E001"]
    assert errors[0].level == checks.ERROR


def test_the_version_check_is_registered():
    from core.checks import check_django_version

    assert check_django_version in checks.registry.registry.get_checks()


@pytest.mark.parametrize("module", ["core.events.outbox", "feed.fanout"])
def test_the_former_cycles_stay_broken(module):
    graph = _graph()
    partner = {"core.events.outbox": "core.events.publisher", "feed.fanout": "feed.tasks"}[module]
    assert module not in graph[partner] or partner not in graph[module]
