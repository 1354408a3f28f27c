"""Model plumbing for the event pipeline: the outbox, atomic saves, and querysets that publish.

Django sends no signal for `QuerySet.update()`, `bulk_create()` or `bulk_update()`, and in autocommit
mode `post_save` runs after the row has committed. `PublishingModel` closes those gaps so that every
change reaches the receivers inside the transaction that makes it:
- `save()` and `delete()` run in `transaction.atomic()`, so the row and its outbox entry commit together;
- `QuerySet.update()` bumps versions and sends `post_save(created=False)` for every row it changed;
- `QuerySet.bulk_create()` sends `post_save(created=True)` for every row it created;
- `QuerySet.bulk_update()` is refused: use `update()` or `save()`, which publish.
`QuerySet.delete()` needs nothing: Django's collector sends `post_delete` per row when receivers exist.

On PostgreSQL a create whose post_save receivers are all `@one_statement_receiver`s takes one round
trip: the row, what the receivers fold in and the outbox rows go in one statement
(`core.one_statement`); elsewhere (SQLite, or any other receiver listening) the ORM path above runs.
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections, models, router, transaction
from django.db.models import F
from django.db.models.signals import post_save
from django.db.models.sql import InsertQuery, UpdateQuery
from django.utils import timezone

from core import one_statement

ONE_STATEMENT_SAFE = "_themoon_one_statement_safe"


def one_statement_receiver(receiver):
    """Mark a post_save receiver that may run before its created row exists (one-statement creates):
    it reads only the instance (its pk and statement-made values may be placeholders that it only
    copies into payloads) and writes only through `publish` or `core.one_statement` folds."""
    setattr(receiver, ONE_STATEMENT_SAFE, True)
    return receiver


def pending_statement(using: str) -> one_statement.OneStatementCreate | None:
    """The one-statement create being assembled on `using`'s connection, if any (model methods that
    write during a receiver fold their statement into it)."""
    return one_statement.pending(connections[using])


class OutboxEvent(models.Model):
    """An event written in the same transaction as its change; deleted once it is in its stream."""

    stream = models.CharField(max_length=200)
    payload = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"outbox #{self.pk} -> {self.stream}"

    @classmethod
    def record(cls, stream: str, payload: bytes, using: str) -> int:
        """INSERT one row and return its id: one statement, without the ORM's per-instance work
        (this runs inside every publishing save)."""
        table = connections[using].ops.quote_name(cls._meta.db_table)
        with connections[using].cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (stream, payload, created_at) VALUES (%s, %s, %s) RETURNING id",  # noqa: S608
                [stream, payload, timezone.now()],
            )
            return cursor.fetchone()[0]


class PublishingQuerySet(models.QuerySet):
    def update(self, **kwargs) -> int:
        """UPDATE, then send post_save for each changed row (with its new version) in the same txn."""
        model = self.model
        if issubclass(model, VersionedModel) and "version" in kwargs:
            raise ValueError(f"{model.__name__}.version is bumped by update() itself; do not set it")
        with transaction.atomic(using=self.db):
            ids = list(self._locked_ids())
            if not ids:
                return 0
            if issubclass(model, VersionedModel):
                kwargs["version"] = F("version") + 1
            changed = model._base_manager.using(self.db).filter(pk__in=ids)
            count = models.QuerySet.update(changed, **kwargs)
            fields = frozenset(kwargs)
            for instance in model._base_manager.using(self.db).filter(pk__in=ids):
                self._saved(instance, created=False, update_fields=fields)
        return count

    def _saved(self, instance, created: bool, update_fields) -> None:
        """What Model.save() would have signalled: the receivers publish the row's event."""
        post_save.send(
            sender=self.model,
            instance=instance,
            created=created,
            update_fields=update_fields,
            raw=False,
            using=self.db,
        )

    def _locked_ids(self):
        """The matching ids, locked in id order (no deadlock between two bulk updates)."""
        return self.values_list("pk", flat=True).order_by("pk").select_for_update()

    def bulk_create(self, objs, *args, **kwargs):
        if kwargs.get("ignore_conflicts") or kwargs.get("update_conflicts"):
            raise ValueError(
                f"{self.model.__name__}.objects.bulk_create() publishes an event per row and needs "
                "their primary keys: ignore_conflicts/update_conflicts are not supported"
            )
        with transaction.atomic(using=self.db):
            created = super().bulk_create(objs, *args, **kwargs)
            for instance in created:
                self._saved(instance, created=True, update_fields=None)
        return created

    def bulk_update(self, objs, fields, batch_size=None):
        raise NotImplementedError(
            f"{self.model.__name__}.objects.bulk_update() would publish no events: "
            "use QuerySet.update() or save()"
        )


class PublishingModel(models.Model):
    """A model whose every change publishes an event in the change's own transaction."""

    objects = PublishingQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        if self._one_statement_possible(using, args, kwargs):
            self._create_in_one_statement(using, kwargs)
            return
        with transaction.atomic(using=using):
            self.before_save(using)
            super().save(*args, **kwargs)

    def _one_statement_possible(self, using: str, args, kwargs) -> bool:
        if args or not settings.EVENTS_ONE_STATEMENT_CREATE or not self._state.adding or self.pk is not None:
            return False
        if int(settings.EVENTS_STREAM_PARTITIONS) > 1:
            # An event's partition comes from its entity's id, which the statement has not made yet
            # when the outbox row's stream is chosen: partitioned streams take the ORM path.
            return False
        if kwargs.get("update_fields") is not None or kwargs.get("force_update"):
            return False
        if kwargs.get("force_insert") not in (None, False, True) or kwargs.keys() - {"using", "force_insert"}:
            return False
        meta = self._meta
        if connections[using].vendor != "postgresql" or meta.parents or meta.db_returning_fields != [meta.pk]:
            return False
        if one_statement.pending(connections[using]) is not None:
            return False  # a save from inside another create's receivers: the ORM path
        # Private to Django (checked on the versions in core.checks.TESTED_DJANGO): the receivers
        # this save would call, none of which may need the row to exist yet.
        sync_receivers, async_receivers = post_save._live_receivers(type(self))
        return not async_receivers and all(getattr(r, ONE_STATEMENT_SAFE, False) for r in sync_receivers)

    def _create_in_one_statement(self, using: str, kwargs) -> None:
        """Django's save with the INSERT held back (`_do_insert`) while the receivers add to the plan,
        then the one statement: alone in autocommit, in a savepoint inside a transaction (as the
        ORM path's save), so a failure leaves the enclosing transaction usable."""
        connection = connections[using]
        plan = one_statement.OneStatementCreate(self, connection.ops.quote_name(OutboxEvent._meta.db_table))
        setattr(connection, one_statement.ATTRIBUTE, plan)
        try:
            self.before_save(using)
            super().save(**kwargs)
        except BaseException:
            self._forget_insert()
            raise
        finally:
            setattr(connection, one_statement.ATTRIBUTE, None)

        def run() -> None:
            if connection.in_atomic_block:
                with transaction.atomic(using=using):
                    plan.execute(connection, timezone.now())
            else:
                plan.execute(connection, timezone.now())

        try:
            try:
                run()
            except one_statement.PreparedStatementLost:
                run()  # nothing was written (its savepoint rolled back); now unprepared
        except BaseException:
            self._forget_insert()
            raise

    def _forget_insert(self) -> None:
        setattr(self, self._meta.pk.attname, None)
        self._state.adding = True

    def _do_insert(self, manager, using, fields, returning_fields, raw):
        plan = one_statement.pending(connections[using])
        if plan is None or plan.instance is not self:
            return super()._do_insert(manager, using, fields, returning_fields, raw)
        query = InsertQuery(type(self))
        query.insert_values(fields, [self], raw=raw)
        compiler = query.get_compiler(using=using)
        compiler.returning_fields = returning_fields
        [(sql, params)] = compiler.as_sql()
        return [(plan.set_row(sql, params, self._meta.pk.column),)]

    def delete(self, *args, **kwargs):
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            return super().delete(*args, **kwargs)

    def before_save(self, using: str) -> None:
        """Hook run inside the save's transaction, before the row is written."""


class VersionedModel(PublishingModel):
    """A row with a `version` that increases by one on every save, in commit order.

    Where the database can return from an UPDATE (PostgreSQL, SQLite), the bump rides on the save's
    own statement: `UPDATE ... SET version = version + 1, ... RETURNING version` (`_do_update`). The
    UPDATE locks the row until commit, so two concurrent saves of one row get different versions and
    the later commit has the higher one; one round trip, no separate read. Elsewhere the next version
    is read first under a row lock (SELECT ... FOR UPDATE), with the same guarantee.
    """

    version = models.PositiveBigIntegerField(default=1, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "version" not in update_fields:
            kwargs["update_fields"] = [*update_fields, "version"]
        super().save(*args, **kwargs)

    def before_save(self, using: str) -> None:
        if self._state.adding or self.pk is None:
            self.version = 1
            return
        if _update_returns(using):
            return  # bumped by the UPDATE itself (_do_update)
        current = (
            type(self)
            ._base_manager.using(using)
            .select_for_update()
            .filter(pk=self.pk)
            .values_list("version", flat=True)
            .first()
        )
        self.version = 1 if current is None else current + 1

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        """Django's UPDATE of the row (private to Django, checked on core.checks.TESTED_DJANGO), with
        `version = version + 1 ... RETURNING version` where the database supports it. No row: the
        save goes on to an INSERT, as a first version."""
        if not values or not _update_returns(using) or self._meta.select_on_save:
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        field = self._meta.get_field("version")
        values = [(f, model, F(field.attname) + 1 if f is field else value) for f, model, value in values]
        query = base_qs.filter(pk=pk_val).query.chain(UpdateQuery)
        query.add_update_fields(values)
        sql, params = query.get_compiler(using=using).as_sql()
        connection = connections[using]
        extra = self.update_returning(connection)
        returning = ", ".join(
            [connection.ops.quote_name(field.column), *(expression for expression, _ in extra)]
        )
        with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {returning}", params)
            row = cursor.fetchone()
        if row is None:
            self.version = 1
            return False
        self.version = row[0]
        for (_, returned), value in zip(extra, row[1:], strict=True):
            returned(value)
        return True

    def update_returning(self, connection) -> list[tuple[str, Callable[[Any], None]]]:
        """More values the save's UPDATE returns, read in that one statement: (SQL expression, a
        function given the value). Receivers see them set (e.g. a related row read FOR SHARE, so a
        concurrent change of it commits wholly before or after this save). None by default."""
        return []


def _update_returns(using: str) -> bool:
    """Whether the database of `using` returns rows from an UPDATE (UPDATE ... RETURNING)."""
    connection = connections[using]
    if connection.vendor == "sqlite":  # RETURNING arrived in SQLite 3.35, with bulk-insert returning
        return connection.features.can_return_rows_from_bulk_insert
    return connection.vendor == "postgresql"
