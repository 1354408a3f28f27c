"""The two pinned dependency sets: requirements.txt holds what the product runs (every module
outside tests/ and bench/ imports only from it), requirements-dev.txt adds the rest on top."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = {
    "pytest",
    "pytest-django",
    "hypothesis",
    "schemathesis",
    "daphne",
    "matplotlib",
    "ruff",
    "playwright",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r "):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not pinned with =="
        assert version, f"{path.name}: {line!r} has no version"
        found[norm(name.split("[")[0])] = version
    return found


def test_both_sets_are_pinned_and_dev_builds_on_runtime():
    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert (ROOT / "requirements-dev.txt").read_text().count("-r requirements.txt") == 1
    assert set(dev) >= DEV_ONLY
    assert not DEV_ONLY & set(runtime)
    assert not set(runtime) & set(dev), "a package pinned in both sets"
    for source, lock in (("requirements.in", runtime), ("requirements-dev.in", {**runtime, **dev})):
        for name, version in pins(ROOT / source).items():
            assert lock.get(name) == version, (
                f"{source} pins {name}=={version}; the lock has {lock.get(name)}"
            )


def product_imports() -> set[str]:
    """Top-level modules imported by the product's code (not tests, benchmarks or migrations)."""
    names = set()
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in {".venv", "tests", "bench", ".run"} or "migrations" in parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_the_product_imports_only_runtime_packages():
    runtime = set(pins(ROOT / "requirements.txt"))
    providers = packages_distributions()
    ours = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists() or path.suffix == ".py"}
    outside = {}
    for module in sorted(product_imports() - set(sys.stdlib_module_names) - ours - {"__future__"}):
        dists = {norm(dist) for dist in providers.get(module, [])}
        if not dists & runtime:
            outside[module] = sorted(dists)
    assert outside == {}
