"""A publishing create in ONE PostgreSQL round trip: the row, what its receivers fold in (a counter
bumped with UPDATE ... RETURNING, a row read FOR SHARE) and its outbox rows, in one statement:

    WITH new_row AS (INSERT INTO chat_message (...) VALUES (...) RETURNING id),
         fold_1 AS (UPDATE chat_conversation SET version = version + 1 WHERE id = %s
                    RETURNING version::text AS value),
         outbox AS (INSERT INTO core_outboxevent (stream, payload, created_at)
                    SELECT v.stream, convert_to(replace(replace(v.payload, <pk>, new_row.id::text),
                                                        <fold_1>, fold_1.value), 'UTF8'), %s
                    FROM (VALUES (0, %s, %s)) AS v (n, stream, payload), new_row, fold_1
                    ORDER BY v.n RETURNING id)
    SELECT (SELECT id FROM new_row), (SELECT value FROM fold_1), ARRAY(SELECT id FROM outbox ...),
           1 / CASE WHEN (SELECT count(*) FROM outbox) = 1 THEN 1 ELSE 0 END

One statement is atomic on its own: in autocommit it commits the row and its outbox rows together
(no BEGIN, no COMMIT); inside a transaction they commit with it. The last column fails the whole
statement (division by zero) when an outbox row is missing, e.g. a folded row that is gone: the row
never commits without its events.

Values the statement makes (the new id, a bumped counter) reach the receivers as placeholders:
strings holding NUL, which no PostgreSQL text value can hold, so their JSON text appears in an
encoded payload only where a placeholder was put. PostgreSQL splices the values' JSON text into the
outbox rows, and `finish` splices the same text into the copies that go to the streams, so both are
byte-identical. `core.models.PublishingModel` builds the plan; `core.events.publisher.publish` and
`fold`-aware model methods (chat's `message_changed`) add to it while it is pending on the connection.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

import orjson
from django.db import DataError, IntegrityError, ProgrammingError

ATTRIBUTE = "_themoon_one_statement"
DIVISION_BY_ZERO = "22012"  # the statement's own check (module docstring)
INVALID_STATEMENT_NAME = "26000"  # a prepared statement the server no longer has

logger = logging.getLogger("core.one_statement")


class PreparedStatementLost(ProgrammingError):
    """The server dropped this connection's prepared statements behind psycopg's back (a pooler's
    DEALLOCATE ALL or DISCARD ALL): nothing was written, and the connection prepares no more, so
    running the statement again is safe and succeeds (`core.models.PublishingModel`)."""


def placeholder(index: int) -> str:
    return f"\x00themoon:{index}\x00"


@dataclass
class _OutboxRow:
    stream: str
    payload: bytes
    written: Callable[[int, bytes], None]


@dataclass
class OneStatementCreate:
    """The pending statement of one create (see the module docstring). Not thread-safe: one per
    connection, pending only while the model's save runs its receivers."""

    instance: object
    outbox_table: str
    row_sql: str = ""
    row_params: list = field(default_factory=list)
    pk_column: str = "id"
    folds: list[tuple[str, list]] = field(default_factory=list)
    outbox: list[_OutboxRow] = field(default_factory=list)

    @property
    def pk_placeholder(self) -> str:
        return placeholder(0)

    def set_row(self, sql: str, params, pk_column: str) -> str:
        """The row's `INSERT ... RETURNING <pk>`; returns the placeholder the pk holds meanwhile."""
        self.row_sql, self.row_params, self.pk_column = sql, list(params), pk_column
        return self.pk_placeholder

    def fold(self, sql: str, params) -> str:
        """Run `sql` (a statement yielding one row with one text column `value`: the JSON text of
        a value) in the create's statement; returns its placeholder. No row: the create fails."""
        self.folds.append((sql, list(params)))
        return placeholder(len(self.folds))

    def outbox_row(self, stream: str, payload: bytes, written: Callable[[int, bytes], None]) -> None:
        """Write an outbox row with the create; `written(outbox_id, payload)` runs once it is (with
        the placeholders replaced in `payload`)."""
        self.outbox.append(_OutboxRow(stream, payload, written))

    def sql(self, quote, now: datetime) -> tuple[str, list]:
        ctes = [f"new_row AS ({self.row_sql})"]
        params = list(self.row_params)
        for index, (fold_sql, fold_params) in enumerate(self.folds, start=1):
            ctes.append(f"fold_{index} AS ({fold_sql})")
            params += fold_params
        values = [(self.pk_placeholder, f"new_row.{quote(self.pk_column)}::text")]
        values += [(placeholder(i), f"fold_{i}.value") for i in range(1, len(self.folds) + 1)]
        selects = [f"(SELECT {quote(self.pk_column)} FROM new_row)"]  # noqa: S608
        selects += [f"(SELECT value FROM fold_{i})" for i in range(1, len(self.folds) + 1)]  # noqa: S608
        if self.outbox:
            spliced, splice_params = _splice(values)
            rows = ", ".join(["(%s, %s::text, %s::text)"] * len(self.outbox))
            sources = ", ".join(["new_row"] + [f"fold_{i}" for i in range(1, len(self.folds) + 1)])
            ctes.append(
                f"outbox AS (INSERT INTO {self.outbox_table} (stream, payload, created_at) "  # noqa: S608
                f"SELECT v.stream, convert_to({spliced}, 'UTF8'), %s FROM (VALUES {rows}) "
                f"AS v (n, stream, payload), {sources} ORDER BY v.n RETURNING id)"
            )
            params += [*splice_params, now]
            for n, row in enumerate(self.outbox):
                params += [n, row.stream, row.payload.decode()]
            selects.append("ARRAY(SELECT id FROM outbox ORDER BY id)")
            selects.append("1 / CASE WHEN (SELECT count(*) FROM outbox) = %s THEN 1 ELSE 0 END")
            params.append(len(self.outbox))
        return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)}", params

    def execute(self, connection, now: datetime) -> None:
        """Run the statement on `connection` (the caller decides the transaction), set the pk,
        and call each outbox row's `written`."""
        sql, params = self.sql(connection.ops.quote_name, now)
        with prepared_cursor(connection) as cursor:
            try:
                cursor.execute(sql, params)
            except DataError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != DIVISION_BY_ZERO:
                    raise
                raise IntegrityError(
                    f"{type(self.instance).__name__} not created: a row its receivers fold in is missing"
                ) from exc
            except ProgrammingError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != INVALID_STATEMENT_NAME:
                    raise
                _stop_preparing(connection)
                raise PreparedStatementLost(str(exc)) from exc
            result = cursor.fetchone()
        pk, texts = result[0], result[1 : 1 + len(self.folds)]
        setattr(self.instance, self.instance._meta.pk.attname, pk)
        if not self.outbox:
            return
        splices = [(_json(self.pk_placeholder), str(pk).encode())]
        splices += [(_json(placeholder(i)), text.encode()) for i, text in enumerate(texts, start=1)]
        for row, outbox_id in zip(self.outbox, result[1 + len(self.folds)], strict=True):
            payload = row.payload
            for old, new in splices:
                payload = payload.replace(old, new)
            row.written(outbox_id, payload)


@cache
def _prepared_cursor_class():
    """Server-side binding, and every statement prepared on its first run (the statement's text
    depends only on the create's shape, so each shape is planned once per connection). Made on
    first use: the PostgreSQL backend is imported only where it is the database."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparedCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            prepare = True if prepare is None else prepare
            return super().execute(query, params, prepare=prepare, binary=binary)

        def _convert_query(self, query, params=None):
            # Kept where Django's query logging reads a psycopg cursor's last statement
            # (`last_executed_query`: its text, placeholders $1... as prepared), as a client
            # cursor keeps it; psycopg's server-binding execute does not.
            self._query = super()._convert_query(query, params)
            return self._query

    return PreparedCursor


def prepared_cursor(connection):
    """A cursor of `connection` whose statements are prepared, wrapped as Django wraps its own
    (error translation, execute wrappers, query logging); a plain `connection.cursor()` when the
    connection has prepared statements off (`prepare_threshold` None: DATABASE_PREPARED_STATEMENTS)."""
    connection.close_if_health_check_failed()  # what connection.cursor() does first (CONN_HEALTH_CHECKS)
    connection.ensure_connection()
    raw = connection.connection
    if getattr(raw, "prepare_threshold", None) is None:
        return connection.cursor()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(_prepared_cursor_class()(raw))  # what connection.cursor() returns


def _stop_preparing(connection) -> None:
    """Prepare nothing more on this connection (psycopg's own switch): its statements can vanish."""
    logger.warning(
        "the database dropped this connection's prepared statements (a pooler resetting server "
        "connections?): this connection goes on unprepared; DATABASE_PREPARED_STATEMENTS=false "
        "turns them off everywhere"
    )
    connection.connection.prepare_threshold = None


def _json(value: str) -> bytes:
    return orjson.dumps(value)


def _splice(values: list[tuple[str, str]]) -> tuple[str, list]:
    expression, params = "v.payload", []
    for text, value_sql in values:
        expression = f"replace({expression}, %s, {value_sql})"
        params.append(_json(text).decode())
    return expression, params


def pending(connection) -> OneStatementCreate | None:
    """The create being assembled on `connection`, if any."""
    return getattr(connection, ATTRIBUTE, None)
