"""One place that formats cache keys: `{namespace}:v{schema}:{parts}`.

Parts are joined with ``:``. A `HashTag` part is rendered in braces (``{post:123}``) so that every key
of one entity lands in one Redis Cluster slot; that is what lets a Lua script or MGET touch them together.
"""

import re
from functools import lru_cache
from typing import NamedTuple

# Letters, digits and a few separators; no ':' (our separator), no braces (hash tags), no spaces.
_PART = re.compile(r"^[A-Za-z0-9_.\-]+$")


class HashTag(NamedTuple):
    """Key parts that Redis Cluster hashes together: HashTag("post", 123) renders as {post:123}."""

    kind: str
    id: int | str


def _check(part: object) -> str:
    text = str(part)
    if not text or not _PART.match(text):
        raise ValueError(f"Invalid cache key part {part!r}: use letters, digits, '_', '.', '-'")
    return text


def _render(part: object) -> str:
    if type(part) is int:  # the common case (ids): always valid
        return str(part)
    if isinstance(part, HashTag):
        return "{" + _check(part.kind) + ":" + _check(part.id) + "}"
    return _check(part)


class CacheKeyBuilder:
    """Builds keys for one namespace and key schema. Changing `schema` (the code's key layout, with
    the namespace's epoch once bumped: "1.3") orphans every old key at once."""

    __slots__ = ("namespace", "prefix", "schema")

    def __init__(self, namespace: str, schema: int | str = 1) -> None:
        self.namespace = _check(namespace)
        self.schema = _check(schema)
        self.prefix = f"{self.namespace}:v{self.schema}:"

    def build(self, *parts: object) -> str:
        if not parts:
            raise ValueError("A cache key needs at least one part")
        return self.prefix + _joined(parts)

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this namespace and schema."""
        return self.prefix + "*"


@lru_cache(maxsize=65536)
def _joined(parts: tuple) -> str:
    """Validated, joined parts; memoized, as the same keys are built again and again on hot paths.
    (Parts are ints, strings and HashTags: hashable, and 1 and True never both occur.)"""
    return ":".join(_render(part) for part in parts)


def identity_key(key: str, key_prefix: str, version: int) -> str:
    """django-redis KEY_FUNCTION (Django's signature): our keys already carry namespace and schema,
    so add nothing."""
    return key
