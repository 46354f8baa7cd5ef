"""The address book: contacts (name, number, free fields, notes) and their groups.

The rules (bounds, number normalisation, what an import merges) are the gateway's (`modemgw.book`); this module
reads and writes. Every contact comes back as one dict: {"id", "name", "number", "fields" (decoded), "notes",
"groups" (names, in name order), "created_at", "updated_at"}; every group as {"id", "name", "description",
"created_at", "members", "opted_out"} (how many of its members are on the opt-out list).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import Duplicate, NotFound

# A group with its member counts (members on the opt-out list counted apart).
_GROUP_SELECT = (
    "SELECT g.id, g.name, g.description, g.created_at, COUNT(m.contact_id) AS members, "
    "COUNT(o.number) AS opted_out FROM contact_groups g LEFT JOIN group_members m ON m.group_id = g.id "
    "LEFT JOIN contacts c ON c.id = m.contact_id LEFT JOIN optouts o ON o.number = c.number")
_NAME_ORDER = "ORDER BY c.name COLLATE NOCASE, c.id"


def _like(text: str) -> str:
    """`text` as a LIKE pattern that finds it anywhere (its own % and _ taken literally, with ESCAPE '\\')."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class BookStore(StoreBase):
    """Contacts and contact groups (tables `contacts`, `contact_groups`, `group_members`; migration 6)."""

    # --- reading contacts ---------------------------------------------------------------------------------------

    def _with_groups(self, rows: Iterable[sqlite3.Row]) -> list[dict]:
        """Contact rows as contact dicts: fields decoded, group names added (one query for them all)."""
        contacts = [dict(row) | {"fields": json.loads(row["fields"] or "{}"), "groups": []} for row in rows]
        if not contacts:
            return contacts
        by_id = {contact["id"]: contact for contact in contacts}
        for row in self.query("SELECT m.contact_id, g.name FROM group_members m JOIN contact_groups g "
                              "ON g.id = m.group_id WHERE m.contact_id IN (SELECT value FROM json_each(?)) "
                              "ORDER BY g.name COLLATE NOCASE", (json.dumps(list(by_id)),)):
            by_id[row[0]]["groups"].append(row[1])
        return contacts

    def contact(self, contact_id: int) -> dict:
        """One contact. Raises NotFound."""
        rows = self.query("SELECT * FROM contacts WHERE id = ?", (contact_id,))
        if not rows:
            raise NotFound(f"no contact {contact_id}")
        return self._with_groups(rows)[0]

    def contacts(self, limit: int | None = 100, *, after: int | None = None, text: str | None = None,
                 digits: str | None = None, group: str | None = None) -> list[dict]:
        """Contacts in name order (any case), then id: at most `limit` (None: all), those after the contact
        `after` (a page's cursor) in that order. `text` finds words in the name, the notes or a field's value;
        `digits` finds digits in the number (either matches when both are given); `group` keeps the members of the
        group of that name (any case). Raises NotFound (no group of that name, no contact `after`)."""
        clauses: list[str] = []
        params: list[Any] = []
        if group is not None:
            clauses.append("c.id IN (SELECT m.contact_id FROM group_members m WHERE m.group_id = ?)")
            params.append(self.group_named(group)["id"])
        found = []
        if text:
            found.append("c.name LIKE ? ESCAPE '\\' OR c.notes LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM "
                         "json_each(c.fields) f WHERE f.value LIKE ? ESCAPE '\\')")
            params += [_like(text)] * 3
        if digits:
            found.append("c.number LIKE ? ESCAPE '\\'")
            params.append(_like(digits))
        if found:
            clauses.append(f"({' OR '.join(found)})")
        if after is not None:
            rows = self.query("SELECT name FROM contacts WHERE id = ?", (after,))
            if not rows:
                raise NotFound(f"no contact {after} (the cursor): it was deleted; start from the first page")
            clauses.append("(c.name > ? COLLATE NOCASE OR (c.name = ? COLLATE NOCASE AND c.id > ?))")
            params += [rows[0][0], rows[0][0], after]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(-1 if limit is None else limit)
        return self._with_groups(self.query(f"SELECT c.* FROM contacts c {where} {_NAME_ORDER} LIMIT ?", params))

    def contacts_by_ids(self, ids: list[int]) -> list[dict]:
        """The contacts of `ids`, in that order (an id given twice comes twice). Raises NotFound naming every id
        that is no contact."""
        rows = self.query("SELECT * FROM contacts WHERE id IN (SELECT value FROM json_each(?))",
                          (json.dumps(list(ids)),))
        by_id = {contact["id"]: contact for contact in self._with_groups(rows)}
        missing = [contact_id for contact_id in dict.fromkeys(ids) if contact_id not in by_id]
        if missing:
            listed = ", ".join(str(contact_id) for contact_id in missing[:20])
            raise NotFound(f"no contact {listed}" + (f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""))
        return [by_id[contact_id] for contact_id in ids]

    def contacts_by_numbers(self, numbers: list[str]) -> dict[str, dict]:
        """The contacts that have one of `numbers` (E.164), by number."""
        rows = self.query("SELECT * FROM contacts WHERE number IN (SELECT value FROM json_each(?))",
                          (json.dumps(list(numbers)),))
        return {contact["number"]: contact for contact in self._with_groups(rows)}

    def group_contacts(self, name: str) -> list[dict]:
        """The members of the group named `name` (any case), in name order. Raises NotFound (no such group)."""
        group_id = self.group_named(name)["id"]
        return self._with_groups(self.query(
            f"SELECT c.* FROM contacts c JOIN group_members m ON m.contact_id = c.id WHERE m.group_id = ? "
            f"{_NAME_ORDER}", (group_id,)))

    # --- changing contacts ----------------------------------------------------------------------------------------

    @staticmethod
    def _number_free(conn: sqlite3.Connection, number: str, contact_id: int | None = None) -> None:
        """Raise Duplicate when another contact than `contact_id` has `number`."""
        row = conn.execute("SELECT id, name FROM contacts WHERE number = ? AND id IS NOT ?",
                           (number, contact_id)).fetchone()
        if row is not None:
            raise Duplicate(f"{number} is already in the address book, as contact {row[0]} ({row[1]})")

    @staticmethod
    def _set_groups(conn: sqlite3.Connection, contact_id: int, group_ids: list[int]) -> None:
        conn.execute("DELETE FROM group_members WHERE contact_id = ?", (contact_id,))
        conn.executemany("INSERT OR IGNORE INTO group_members (group_id, contact_id) VALUES (?, ?)",
                         [(group_id, contact_id) for group_id in group_ids])

    def add_contact(self, name: str, number: str, fields: dict, notes: str, group_ids: list[int],
                    now: float) -> dict:
        """A new contact in the groups `group_ids`: its dict. Raises Duplicate (the number is in the book),
        NotFound (a group is gone)."""
        with self.transaction() as conn:
            self._number_free(conn, number)
            self._groups_exist(conn, group_ids)
            contact_id = inserted_id(conn.execute(
                "INSERT INTO contacts (name, number, fields, notes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, number, json.dumps(fields, ensure_ascii=False), notes, now, now)))
            self._set_groups(conn, contact_id, group_ids)
        return self.contact(contact_id)

    def update_contact(self, contact_id: int, now: float, *, name: str | None = None, number: str | None = None,
                       fields: dict | None = None, notes: str | None = None,
                       group_ids: list[int] | None = None) -> dict:
        """Change what is given (`fields` and `group_ids` replace the contact's own): the contact after. Raises
        NotFound, Duplicate (another contact has `number`)."""
        changes: dict[str, Any] = {"name": name, "number": number, "notes": notes,
                                   "fields": None if fields is None else json.dumps(fields, ensure_ascii=False)}
        changes = {column: value for column, value in changes.items() if value is not None}
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM contacts WHERE id = ?", (contact_id,)).fetchone() is None:
                raise NotFound(f"no contact {contact_id}")
            if number is not None:
                self._number_free(conn, number, contact_id)
            assignments = ", ".join(f"{column} = ?" for column in changes)
            conn.execute(f"UPDATE contacts SET {assignments}{', ' if changes else ''}updated_at = ? WHERE id = ?",
                         (*changes.values(), now, contact_id))
            if group_ids is not None:
                self._groups_exist(conn, group_ids)
                self._set_groups(conn, contact_id, group_ids)
        return self.contact(contact_id)

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact (and its memberships). Raises NotFound."""
        with self.transaction() as conn:
            if conn.execute("DELETE FROM contacts WHERE id = ?", (contact_id,)).rowcount == 0:
                raise NotFound(f"no contact {contact_id}")

    def import_contacts(self, contacts: list[dict], now: float) -> tuple[int, int]:
        """Write imported contacts in one transaction: (how many were new, how many were updated). Each is
        {"name", "number", "fields", "notes", "groups": [names]}, complete (the gateway merged it with the contact
        already there): a number already in the book updates that contact. The groups named are created when
        missing; memberships are only ever added."""
        numbers = [contact["number"] for contact in contacts]
        with self.transaction() as conn:
            existing = {row[0] for row in conn.execute(
                "SELECT number FROM contacts WHERE number IN (SELECT value FROM json_each(?))",
                (json.dumps(numbers),))}
            conn.executemany(
                "INSERT INTO contacts (name, number, fields, notes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (number) DO UPDATE SET name = excluded.name, fields = excluded.fields, "
                "notes = excluded.notes, updated_at = excluded.updated_at",
                [(contact["name"], contact["number"], json.dumps(contact["fields"], ensure_ascii=False),
                  contact["notes"], now, now) for contact in contacts])
            group_ids: dict[str, int] = {}
            for contact in contacts:
                for name in contact["groups"]:
                    if name not in group_ids:
                        group_ids[name] = self._group_id_creating(conn, name, now)
            if group_ids:
                ids = {row[1]: row[0] for row in conn.execute(
                    "SELECT id, number FROM contacts WHERE number IN (SELECT value FROM json_each(?))",
                    (json.dumps(numbers),))}
                conn.executemany("INSERT OR IGNORE INTO group_members (group_id, contact_id) VALUES (?, ?)",
                                 [(group_ids[name], ids[contact["number"]]) for contact in contacts
                                  for name in contact["groups"]])
        updated = len(existing)
        return len(contacts) - updated, updated

    # --- groups -------------------------------------------------------------------------------------------------

    @staticmethod
    def _group_id_creating(conn: sqlite3.Connection, name: str, now: float) -> int:
        row = conn.execute("SELECT id FROM contact_groups WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return row[0]
        return inserted_id(conn.execute("INSERT INTO contact_groups (name, description, created_at) "
                                        "VALUES (?, '', ?)", (name, now)))

    @staticmethod
    def _groups_exist(conn: sqlite3.Connection, group_ids: list[int]) -> None:
        found = {row[0] for row in conn.execute("SELECT id FROM contact_groups WHERE id IN "
                                                "(SELECT value FROM json_each(?))", (json.dumps(group_ids),))}
        missing = [str(group_id) for group_id in group_ids if group_id not in found]
        if missing:
            raise NotFound(f"no group {', '.join(missing)}")

    def groups(self) -> list[dict]:
        """Every group in name order (any case), with its member counts."""
        return self.query_dicts(f"{_GROUP_SELECT} GROUP BY g.id ORDER BY g.name COLLATE NOCASE")

    def group(self, group_id: int) -> dict:
        """One group, with its member counts. Raises NotFound."""
        rows = self.query(f"{_GROUP_SELECT} WHERE g.id = ? GROUP BY g.id", (group_id,))
        if not rows:
            raise NotFound(f"no group {group_id}")
        return dict(rows[0])

    def group_named(self, name: str) -> dict:
        """The group of that name (any case), with its member counts. Raises NotFound."""
        rows = self.query(f"{_GROUP_SELECT} WHERE g.name = ? GROUP BY g.id", (name,))
        if not rows:
            raise NotFound(f"no group named {name!r}")
        return dict(rows[0])

    def group_ids(self, names: list[str]) -> list[int]:
        """The ids of the groups named (any case), in that order. Raises NotFound naming those that do not exist."""
        ids, missing = [], []
        for name in names:
            rows = self.query("SELECT id FROM contact_groups WHERE name = ?", (name,))
            if rows:
                ids.append(rows[0][0])
            else:
                missing.append(repr(name))
        if missing:
            raise NotFound(f"no group named {', '.join(missing)}")
        return ids

    def add_group(self, name: str, description: str, now: float) -> dict:
        """A new group: its dict. Raises Duplicate (a group of that name, in any case, exists)."""
        with self.transaction() as conn:
            self._group_name_free(conn, name)
            group_id = inserted_id(conn.execute("INSERT INTO contact_groups (name, description, created_at) "
                                                "VALUES (?, ?, ?)", (name, description, now)))
        return self.group(group_id)

    @staticmethod
    def _group_name_free(conn: sqlite3.Connection, name: str, group_id: int | None = None) -> None:
        row = conn.execute("SELECT name FROM contact_groups WHERE name = ? AND id IS NOT ?",
                           (name, group_id)).fetchone()
        if row is not None:
            raise Duplicate(f"a group named {row[0]!r} exists")

    def update_group(self, group_id: int, *, name: str | None = None, description: str | None = None) -> dict:
        """Rename a group or change its description: the group after. Raises NotFound, Duplicate."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM contact_groups WHERE id = ?", (group_id,)).fetchone() is None:
                raise NotFound(f"no group {group_id}")
            if name is not None:
                self._group_name_free(conn, name, group_id)
                conn.execute("UPDATE contact_groups SET name = ? WHERE id = ?", (name, group_id))
            if description is not None:
                conn.execute("UPDATE contact_groups SET description = ? WHERE id = ?", (description, group_id))
        return self.group(group_id)

    def delete_group(self, group_id: int) -> None:
        """Delete a group and its memberships; its contacts stay. Raises NotFound."""
        with self.transaction() as conn:
            if conn.execute("DELETE FROM contact_groups WHERE id = ?", (group_id,)).rowcount == 0:
                raise NotFound(f"no group {group_id}")

    def add_group_members(self, group_id: int, contact_ids: list[int]) -> int:
        """Put contacts into a group (those in it already stay): how many joined. Raises NotFound (no such group,
        or ids that are no contact: then nobody joins)."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM contact_groups WHERE id = ?", (group_id,)).fetchone() is None:
                raise NotFound(f"no group {group_id}")
            found = {row[0] for row in conn.execute("SELECT id FROM contacts WHERE id IN "
                                                    "(SELECT value FROM json_each(?))", (json.dumps(contact_ids),))}
            missing = [str(contact_id) for contact_id in dict.fromkeys(contact_ids) if contact_id not in found]
            if missing:
                raise NotFound(f"no contact {', '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO group_members (group_id, contact_id) VALUES (?, ?)",
                             [(group_id, contact_id) for contact_id in dict.fromkeys(contact_ids)])
            return conn.total_changes - before

    def remove_group_member(self, group_id: int, contact_id: int) -> None:
        """Take a contact out of a group. Raises NotFound (no such group, or the contact is not in it)."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM contact_groups WHERE id = ?", (group_id,)).fetchone() is None:
                raise NotFound(f"no group {group_id}")
            if conn.execute("DELETE FROM group_members WHERE group_id = ? AND contact_id = ?",
                            (group_id, contact_id)).rowcount == 0:
                raise NotFound(f"contact {contact_id} is not in group {group_id}")
