"""Saved message templates: a name, a body with {placeholders} and spintax.

Rows only: whether a body is a good template (its spintax, its placeholders, its size) is decided by
`modemgw.templates`, which calls these methods. Names are unique whatever their case (the column is
`COLLATE NOCASE`), so "Reminder" and "reminder" cannot both exist and either finds the one.
"""

from __future__ import annotations

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import Duplicate, NotFound

# The columns an update may change; anything else is refused by name (never written into the SQL text).
TEMPLATE_COLUMNS = ("name", "body", "spintax")


class TemplateStore(StoreBase):
    """Saved templates (table `templates`; migration 6)."""

    def templates(self) -> list[dict]:
        """Every saved template, by name (case-insensitive), then id. Raises StoreError."""
        return self.query_dicts("SELECT * FROM templates ORDER BY name COLLATE NOCASE, id")

    def template(self, template_id: int) -> dict:
        """One template. Raises NotFound, StoreError."""
        rows = self.query("SELECT * FROM templates WHERE id = ?", (template_id,))
        if not rows:
            raise NotFound(f"no template {template_id}")
        return dict(rows[0])

    def template_by_name(self, name: str) -> dict:
        """The template called `name`, whatever its case (ASCII letters: SQLite's NOCASE). Raises NotFound,
        StoreError."""
        rows = self.query("SELECT * FROM templates WHERE name = ? COLLATE NOCASE", (name,))
        if not rows:
            raise NotFound(f"no template named {name!r}")
        return dict(rows[0])

    def add_template(self, name: str, body: str, spintax: bool, now: float) -> dict:
        """A new template: its row. Raises Duplicate (a template of that name exists, whatever its case),
        StoreError."""
        with self.transaction() as conn:
            self._check_name_free(conn, name, None)
            template_id = inserted_id(conn.execute(
                "INSERT INTO templates (name, body, spintax, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (name, body, int(spintax), now, now)))
        return self.template(template_id)

    def update_template(self, template_id: int, changes: dict, now: float) -> dict:
        """Change a template's `name`, `body` or `spintax` (the keys of `changes`): its row after. Raises NotFound,
        Duplicate (the new name is another template's), StoreError; ValueError for another key."""
        unknown = sorted(set(changes) - set(TEMPLATE_COLUMNS))
        if unknown:
            raise ValueError(f"templates have no column {', '.join(unknown)}")
        values: dict[str, str | int] = {column: int(value) if column == "spintax" else value
                                        for column, value in changes.items()}
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM templates WHERE id = ?", (template_id,)).fetchone() is None:
                raise NotFound(f"no template {template_id}")
            if "name" in values:
                self._check_name_free(conn, str(values["name"]), template_id)
            assignments = "".join(f"{column} = ?, " for column in TEMPLATE_COLUMNS if column in values)
            conn.execute(f"UPDATE templates SET {assignments}updated_at = ? WHERE id = ?",
                         (*(values[column] for column in TEMPLATE_COLUMNS if column in values), now, template_id))
        return self.template(template_id)

    def delete_template(self, template_id: int) -> None:
        """Delete a template (messages sent from it keep their text). Raises NotFound, StoreError."""
        with self.transaction() as conn:
            if conn.execute("DELETE FROM templates WHERE id = ?", (template_id,)).rowcount == 0:
                raise NotFound(f"no template {template_id}")

    @staticmethod
    def _check_name_free(conn, name: str, own_id: int | None) -> None:
        """Raise Duplicate when another template (not `own_id`) is called `name`, whatever its case: said
        plainly, rather than as SQLite's UNIQUE failure."""
        row = conn.execute("SELECT id, name FROM templates WHERE name = ? COLLATE NOCASE AND id IS NOT ?",
                           (name, own_id)).fetchone()
        if row is not None:
            raise Duplicate(f"a template named {row['name']!r} exists already (template {row['id']}); "
                            "choose another name")
