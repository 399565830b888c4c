"""How a record becomes an Arrow row: its fields by name, in order (a test holds every output
record's fields equal to its schema's columns), and the column helper that documents each one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Any

import pyarrow as pa


class Row:
    """A record written as an Arrow row: its fields by name, tuples as lists, records inside it as
    rows of their own (Arrow structs)."""

    def to_row(self) -> dict[str, Any]:
        return row_of(self)


def row_of(record: Any) -> dict[str, Any]:
    return {f.name: _value(getattr(record, f.name)) for f in fields(record)}


def _value(v: Any) -> Any:
    if isinstance(v, tuple):  # a list column; pairs inside it stay tuples (a map column's entries)
        return [row_of(x) if _is_record(x) else x for x in v]
    return row_of(v) if _is_record(v) else v


def _is_record(v: Any) -> bool:
    return is_dataclass(v) and not isinstance(v, type)


def column(name: str, type_: pa.DataType, doc: str, nullable: bool = False) -> pa.Field:
    """An output column with its meaning (docs/output.md is generated from these)."""
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


def to_table(records: Iterable[Any], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema)
