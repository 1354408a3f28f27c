"""A hot read's queryset compiled to SQL once per shape, then run with new parameters.

Building and compiling a queryset is Python work the database never sees: for a feed page's posts
it was about 1 ms, more than PostgreSQL took to run the statement. A cache fill runs the same few
querysets again and again with other ids, so `CompiledQuery` builds its queryset once per *shape*
with stand-in values, finds where they went in the compiled parameters, and from then on runs the
SQL with the real values in their places through `connection.cursor()` (the same execute wrappers,
logging and connection handling as the ORM), converting each row as the ORM would (the compiler's
own converters: SQLite's datetimes, for instance).

The contract of `build`:
- its positional arguments are query parameters: ints, or lists of ints (an `IN`); it only passes
  them to the ORM, never branches on or computes with their values (a list's length may shape the
  SQL: it is part of the shape);
- its keyword arguments shape the SQL itself (a slice's LIMIT/OFFSET, which Django writes into the
  SQL): any hashable values, part of the shape;
- it returns a `values_list()` queryset (tuples, or `flat=True`).

A shape whose stand-ins do not each come out exactly once, as plain ints, in the parameters (a
value written into the SQL, dropped, repeated, or wrapped: PostgreSQL's `Int4` of a `Value()`) is not
cached: it runs through the ORM every time, with the same rows. A `build` that branches on or
computes with its values breaks the contract in a way no check can see: never write one.
"""

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.query import FlatValuesListIterable, ValuesListIterable

# Stand-ins: negative ids no real row has, far from any constant a query could carry itself.
_STAND_IN_BASE = -(2**62) + 7_000_003


@dataclass(frozen=True)
class _Plan:
    """One shape's SQL: where each argument value goes in its parameters, how rows convert."""

    alias: str
    sql: str
    params: tuple[Any, ...]  # the compiled parameters, stand-ins in place
    slots: tuple[tuple[int, int, int | None], ...]  # (parameter index, argument, list item or None)
    converters: tuple[tuple[int, tuple[Callable, ...], Any], ...]  # (column, converters, expression)
    flat: bool


_UNCACHEABLE = object()


class CompiledQuery:
    """`CompiledQuery(build)(*params, **shape)`: the rows of `build(*params, **shape)` as the ORM
    gives them (tuples, or values with flat=True), compiled once per shape (module docstring)."""

    def __init__(self, build: Callable[..., QuerySet], max_shapes: int = 512) -> None:
        self.build = build
        self.max_shapes = max_shapes  # a feed's IN list has a shape per followee count: bounded
        self._plans: dict[Hashable, _Plan | object] = {}  # a dict's get and set are atomic: no lock

    def __call__(self, *params: int | Sequence[int], **shape: Hashable) -> list[Any]:
        key = self._shape_key(params, shape)
        plan = self._plans.get(key) if key is not None else _UNCACHEABLE
        if plan is None:
            if len(self._plans) >= self.max_shapes:
                self._plans.clear()  # dropped whole at its bound: compiling again is cheap
            plan = self._plans[key] = self._compile(params, shape)
        if plan is _UNCACHEABLE:
            return list(self.build(*params, **shape))
        return self._run(plan, params)

    def compiled_shapes(self) -> int:
        """How many shapes run from compiled SQL (tests and diagnostics)."""
        return sum(plan is not _UNCACHEABLE for plan in self._plans.values())

    @staticmethod
    def _shape_key(params: tuple, shape: dict[str, Hashable]) -> Hashable | None:
        """The cache key of a call, or None when a parameter is not an int or a list of ints."""
        lengths = []
        for param in params:
            if type(param) is int:
                lengths.append(None)
            elif isinstance(param, list | tuple) and param and all(type(item) is int for item in param):
                lengths.append(len(param))
            else:
                return None
        return (tuple(lengths), tuple(sorted(shape.items())))

    def _compile(self, params: tuple, shape: dict[str, Hashable]) -> _Plan | object:
        stand_ins: dict[int, tuple[int, int | None]] = {}  # stand-in -> (argument, list item or None)

        def stand_in(argument: int, item: int | None) -> int:
            value = _STAND_IN_BASE - len(stand_ins)
            stand_ins[value] = (argument, item)
            return value

        arguments = [
            stand_in(index, None) if type(param) is int else [stand_in(index, i) for i in range(len(param))]
            for index, param in enumerate(params)
        ]
        try:
            queryset = self.build(*arguments, **shape)
        except Exception:  # e.g. a stand-in used as a slice: the ORM path raises it for real, if at all
            return _UNCACHEABLE
        iterable = queryset._iterable_class
        if iterable not in (ValuesListIterable, FlatValuesListIterable):
            raise TypeError(f"{self.build!r} must return a values_list() queryset")
        compiler = queryset.query.get_compiler(queryset.db)
        try:
            sql, compiled = compiler.as_sql()
        except Exception:  # EmptyResultSet and kin: the ORM knows what to answer
            return _UNCACHEABLE
        found = [(at, v) for at, v in enumerate(compiled) if isinstance(v, int) and v in stand_ins]
        if any(type(value) is not int for _, value in found):  # wrapped (PostgreSQL's Int4 of a
            return _UNCACHEABLE  # Value()): a plain int in its place would change its SQL type
        slots = [(at, *stand_ins[value]) for at, value in found]
        placed = {(argument, item) for _, argument, item in slots}
        if not len(slots) == len(placed) == len(stand_ins):  # each stand-in exactly once, or the SQL
            return _UNCACHEABLE  # holds a value itself (folded in, dropped, repeated): not reusable
        columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
        if compiler.has_composite_fields(columns):
            return _UNCACHEABLE
        converters = tuple(
            (column, tuple(convs), expression)
            for column, (convs, expression) in compiler.get_converters(columns).items()
        )
        return _Plan(
            queryset.db, sql, tuple(compiled), tuple(slots), converters, iterable is FlatValuesListIterable
        )

    @staticmethod
    def _run(plan: _Plan, params: tuple) -> list[Any]:
        values = list(plan.params)
        for position, argument, item in plan.slots:
            values[position] = params[argument] if item is None else params[argument][item]
        connection = connections[plan.alias]
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, values)
            rows = cursor.fetchall()
        if plan.converters:
            rows = [_converted(row, plan.converters, connection) for row in rows]
        if plan.flat:
            return [row[0] for row in rows]
        return rows


def _converted(row: Sequence[Any], converters: tuple, connection) -> tuple[Any, ...]:
    row = list(row)
    for column, convs, expression in converters:
        value = row[column]
        for converter in convs:
            value = converter(value, expression, connection)
        row[column] = value
    return tuple(row)
