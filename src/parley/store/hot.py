"""Hot statements: compiled once per dialect by SQLAlchemy, sent straight to the driver.

Why: a Core ``conn.execute`` costs about 35 µs of Python on this machine — the compiled-cache
lookup, building the parameters, a ``CursorResult`` with its metadata — against about 4 µs for
the driver itself to run a keyed read. The permit, the worker and the audit chain run a dozen
such statements per contact, so that overhead was the largest single cost of the online path.

A ``Hot`` statement keeps everything that makes Core safe and drops only the per-call work:

- the SQL text is SQLAlchemy's own compilation for the connection's dialect (once per set of
  parameter names, as Core caches it);
- every parameter goes through its type's bind processor and every result column through its
  result processor (public ``TypeEngine`` API), so a ``UTCDateTime`` still refuses a naive
  datetime and still comes back tz-aware;
- it runs on the caller's connection, inside the caller's transaction;
- a driver error is raised as SQLAlchemy's ``DBAPIError`` subclass (``IntegrityError``,
  ``OperationalError``…), so retries and conflict handling see what they always saw.

Rows come back as plain tuples (index them). What it does not do: echo the SQL or fire
``before/after_cursor_execute`` events (a listener counting statements does not see these). Statements whose execution needs Core's
machinery are refused when first compiled: ``IN`` lists (Core renders them on every
execution; write a fixed list as ``col = a OR col = b``), literal-rendered parameters, and
inserts or updates that would fill column defaults in Python (pass every column instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

_FROM_PARAMS = object()  # this parameter's value is the caller's, not the statement's

Processor = Callable[[Any], Any] | None


class _Form:
    """One compilation: the SQL, how to build the driver's parameters, how to read a row."""

    __slots__ = ("sql", "positional", "binds", "results")

    def __init__(self, sql: str, positional: bool,
                 binds: list[tuple[str, Processor, Any]], results: list[Processor]) -> None:
        self.sql = sql
        self.positional = positional
        self.binds = binds  # (name, processor, fixed value or _FROM_PARAMS), in SQL order
        self.results = results

    def arguments(self, params: Mapping[str, Any]) -> Any:
        values = []
        for name, proc, fixed in self.binds:  # a fixed value was processed when compiled
            value = params[name] if fixed is _FROM_PARAMS else fixed
            values.append(value if proc is None else proc(value))
        if self.positional:
            return tuple(values)
        return {name: v for (name, _p, _f), v in zip(self.binds, values, strict=True)}

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        if not self.results:  # text(): untyped, as the driver gives it
            return tuple(raw)
        return tuple(v if p is None or v is None else p(v)
                     for p, v in zip(self.results, raw, strict=True))


class Hot:
    """A statement for the hot path; see the module docstring for what it keeps and drops."""

    __slots__ = ("statement", "_forms")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._forms: dict[tuple[str, tuple[str, ...]], _Form] = {}

    # ---------------------------------------------------------------- running

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        form, cur = self._execute(conn, params)
        return [form.row(r) for r in cur.fetchall()]

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        form, cur = self._execute(conn, params)
        raw = cur.fetchone()
        return None if raw is None else form.row(raw)

    def one(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...]:
        row = self.first(conn, params)
        if row is None:
            raise NoResultFound("No row was found when one was required")
        return row

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute for its effect; the number of rows it matched."""
        _form, cur = self._execute(conn, params)
        return int(cur.rowcount)

    def run_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """One statement, many parameter sets (all with the same names)."""
        if not params:
            return
        form = self._form(conn.dialect, tuple(params[0]))
        args = [form.arguments(p) for p in params]
        self._call(conn, form, lambda raw: raw.cursor().executemany(form.sql, args), args)

    # ---------------------------------------------------------------- internals

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Form, Any]:
        form = self._form(conn.dialect, tuple(params))
        args = form.arguments(params)
        return form, self._call(conn, form, lambda raw: raw.execute(form.sql, args), args)

    @staticmethod
    def _call(conn: Connection, form: _Form, work: Callable[[Any], Any], args: Any) -> Any:
        if not conn.in_transaction():
            raise RuntimeError("a hot statement runs inside a transaction (db.transaction/read)")
        dialect = conn.dialect
        raw = conn.connection.driver_connection
        try:
            return work(raw)
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, raw, None)
            if lost:  # as Core does: the pool must not hand this connection out again
                conn.invalidate(exc)
            raise DBAPIError.instance(form.sql, args, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=lost, dialect=dialect) from exc

    def _form(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
        form = self._forms.get((dialect.name, keys))
        if form is None:
            form = self._forms[(dialect.name, keys)] = self._compile(dialect, keys)
        return form

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)  # noqa: S101
        if compiled.insert_prefetch or compiled.update_prefetch:
            missing = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            raise TypeError(f"hot statement would fill defaults in Python; pass {missing}")
        if compiled.post_compile_params or compiled.literal_execute_params:
            # Core renders these anew on every execution; write a fixed list as col = a OR ...
            raise TypeError("hot statements take no IN lists or literal-rendered parameters")
        names = list(compiled.positiontup or ()) if dialect.positional else list(compiled.binds)
        unused = sorted(set(keys) - set(names))
        if unused:  # Core says "unconsumed column names": a misspelt column must not pass
            raise TypeError(f"hot statement does not use parameters {unused}")
        binds: list[tuple[str, Processor, Any]] = []
        for name in names:
            bind = compiled.binds[name]
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in keys:
                binds.append((name, proc, _FROM_PARAMS))
            elif bind.required or (bind.value is None and bind.callable is None):
                raise TypeError(f"hot statement needs parameter {name!r}")
            else:
                value = bind.effective_value
                binds.append((name, None, proc(value) if proc is not None else value))
        # A select's columns, or what an insert / update returns; text() has no types.
        columns = getattr(self.statement, "selected_columns", None)
        if columns is None:
            columns = getattr(self.statement, "exported_columns", ())
        results: list[Processor] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        return _Form(compiled.string, dialect.positional, binds, results)
