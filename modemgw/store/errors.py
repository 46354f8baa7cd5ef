"""The store's errors: what went wrong, as a class a caller can catch, never as text to match.

`StoreError.kind` says why from SQLite's error code (for health checks and 503 answers); the subclasses say what
a caller may do about it: `NotFound` (no such row), `Conflict` (the write breaks a rule of the data: retrying
cannot help) and its `Duplicate` (a name or key that must be unique is taken).
"""

from __future__ import annotations

import sqlite3

# Primary SQLite result codes (the low byte of an extended code) -> StoreError.kind
SQLITE_KINDS = {5: "locked", 6: "locked", 8: "readonly", 10: "io", 11: "corrupt", 13: "full", 14: "io",
                19: "constraint", 26: "corrupt"}
# Extended codes of SQLITE_CONSTRAINT that mean "this value is taken" (Duplicate); other constraints are Conflicts.
SQLITE_UNIQUE_CODES = frozenset({1555, 2067})  # SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE
# Kinds that say the database cannot take writes (kept as the store's last write failure until a commit works).
UNHEALTHY_KINDS = frozenset({"full", "locked", "io", "readonly", "corrupt"})


class StoreError(Exception):
    """The database cannot do what was asked (full disk, corrupt file, ...).

    `kind` says why, from SQLite's error code: "full" (no space left), "locked" (another writer held the
    database past the busy timeout), "io", "readonly", "corrupt", "constraint" (a UNIQUE or similar rule: then
    the error is a `Conflict`), or "error" (anything else)."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind

    @classmethod
    def from_sqlite(cls, error: sqlite3.Error, message: str) -> StoreError:
        """`message` (which says what failed) as the StoreError that SQLite's error code names: a `Duplicate`
        for a UNIQUE or PRIMARY KEY clash, a `Conflict` for another constraint, else a StoreError of its kind."""
        code = getattr(error, "sqlite_errorcode", None)
        kind = SQLITE_KINDS.get(code & 0xFF, "error") if code is not None else "error"
        if kind == "constraint":
            return Duplicate(message) if code in SQLITE_UNIQUE_CODES else Conflict(message)
        return cls(message, kind)


class NotFound(StoreError):
    """No row with that id."""


class Conflict(StoreError):
    """The write breaks a rule of the data (a constraint), not of the storage: retrying cannot help."""

    def __init__(self, message: str, kind: str = "constraint"):
        super().__init__(message, kind)


class Duplicate(Conflict):
    """A value that must be unique is taken: a modem label, a user name, an Idempotency-Key."""
