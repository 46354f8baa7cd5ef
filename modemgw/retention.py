"""Retention as the gateway offers it (#19): the scheduler's pruning pass, the database's size and oldest rows for
`modemgw status` and the dashboard, and VACUUM for `modemgw vacuum`.

A pass (`Gateway.prune`, run every `[retention] interval_minutes`) walks each subject of the store
(store/retention.py) in batches of at most `batch_size` rows: one short transaction each, with `batch_pause`
between them, during which sends take the write lock they share with it. A batch that takes longer than
BATCH_TARGET_SECONDS (a slow SD card, or sends waiting for the lock) halves the next one. A batch that fails is
logged and skipped (the next pass tries it again); three failures in a row end that subject's walk for this pass
(the database is unwell: full, locked, read-only). A stop (`stop_pruning`, at the daemon's stop) ends the pass
at its next batch.

After the deletes, freed pages go back to the file system in small steps (SQLite's incremental vacuum) when the
database was created with auto_vacuum = INCREMENTAL (or converted by `modemgw vacuum`), keeping a reserve for the
next hour's inserts; SQLite reuses freed pages by itself in any case, so a database under steady retention stops
growing either way. A write-ahead log grown past its usual size (a large batch) is truncated when nothing is
queued or being sent.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from modemgw.store import StoreError
from modemgw.store.base import PAGE_SIZE

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store

log = logging.getLogger("modemgw.retention")

# Each subject of the store's walk, and the [retention] option that says how many days it is kept.
SUBJECTS = (("messages", "messages_days"), ("submissions", "messages_days"), ("events", "messages_days"),
            ("inbox", "inbox_days"), ("inbox_parts", "inbox_days"), ("inbox_seen", "inbox_days"),
            ("webhook_deliveries", "webhook_deliveries_days"), ("audit", "audit_days"))
FAILURES_IN_A_ROW = 3        # failed batches that end a subject's walk for this pass
KEEP_FREE_BYTES = 1 << 20    # free pages kept for the next inserts (no shrinking a file that grows back at once)
VACUUM_STEP_BYTES = 1 << 20  # pages given back per transaction
CHECKPOINT_BUSY_MS = 100     # a truncating checkpoint waits this long for readers, then gives up until next time
WAL_KEPT_BYTES = 8 * 1024 * 1024  # a write-ahead log up to this size is not truncated (SQLite's own: ~1-4 MiB)
BATCH_TARGET_SECONDS = 0.05  # a batch that held (or waited for) the write lock longer halves the next one ...
MIN_BATCH = 20               # ... down to this many rows; a quick one doubles it again, up to `batch_size`

_lock = threading.Lock()     # creates a gateway's stop event once


class Retention:
    """A part of `Gateway` (a mixin over `self.store` and `self.settings`)."""

    store: Store
    settings: GatewaySettings

    def _pruning_stop(self) -> threading.Event:
        with _lock:
            event = getattr(self, "_retention_stop", None)
            if event is None:
                event = self._retention_stop = threading.Event()
            return event

    def stop_pruning(self) -> None:
        """End a pass under way at its next batch, and make later ones return at once (the daemon stops)."""
        self._pruning_stop().set()

    def prune(self, now: float | None = None) -> dict:
        """One pruning pass over every subject whose retention is not 0 (forever), then the freed pages and the
        write-ahead log (module docstring). `now` moves the cut-offs (tests, tools). Never raises StoreError: a
        failed batch is logged and counted. Returns (and keeps, for `storage_summary`) {"at", "seconds",
        "deleted": {subject: rows}, "failed_batches", "batches", "longest_batch_seconds", "vacuumed_bytes",
        "checkpoint": "truncated", "busy", "skipped" (something was being sent) or "failed", "complete": False
        when the stop came first}."""
        retention = self.settings.retention
        stop = self._pruning_stop()
        started, clock = time.time(), time.monotonic()
        now = started if now is None else now
        result: dict[str, Any] = {"at": started, "deleted": {}, "failed_batches": 0, "batches": 0,
                                  "longest_batch_seconds": 0.0, "vacuumed_bytes": 0, "checkpoint": None,
                                  "complete": True}
        for subject, option in SUBJECTS:
            days = getattr(retention, option)
            if days <= 0 or stop.is_set():
                continue
            result["deleted"][subject] = self._prune_subject(subject, now - days * 86400, result, stop)
        if not stop.is_set():
            result["vacuumed_bytes"] = self._give_back_pages(stop)
            result["checkpoint"] = self._checkpoint_when_idle()
        result["complete"] = not stop.is_set()
        result["seconds"] = round(time.monotonic() - clock, 3)
        self._last_prune = result
        deleted = sum(result["deleted"].values())
        if deleted or result["failed_batches"]:
            log.info("retention: %d rows deleted (%s) in %.1f s, %d failed batches, %d KiB given back", deleted,
                     ", ".join(f"{name} {count}" for name, count in result["deleted"].items() if count),
                     result["seconds"], result["failed_batches"], result["vacuumed_bytes"] // 1024)
        return result

    def _prune_subject(self, subject: str, before: float, result: dict, stop: threading.Event) -> int:
        """Walk one subject batch by batch until it is done, fails FAILURES_IN_A_ROW times in a row, or the
        daemon stops; how many rows went."""
        retention = self.settings.retention
        cursor: Any = None
        deleted = failures = 0
        size = retention.batch_size
        while not stop.is_set():
            try:
                ids, following = self.store.prune_candidates(subject, before, cursor, size)
            except StoreError as error:  # nothing to skip to: the walk ends for this pass
                result["failed_batches"] += 1
                log.error("retention: cannot read the %s to prune: %s", subject, error)
                break
            if ids:
                began = time.monotonic()
                try:
                    deleted += self.store.prune_delete(subject, before, ids)
                    failures = 0
                except StoreError as error:
                    failures += 1
                    result["failed_batches"] += 1
                    log.warning("retention: a batch of %d %s was not deleted (skipped until the next pass): %s",
                                len(ids), subject, error)
                    if failures >= FAILURES_IN_A_ROW:
                        log.error("retention: %d batches of %s failed in a row: the rest wait for the next pass",
                                  failures, subject)
                        break
                result["batches"] += 1
                took = time.monotonic() - began
                result["longest_batch_seconds"] = max(result["longest_batch_seconds"], round(took, 4))
                if took > BATCH_TARGET_SECONDS:  # a slow card, or sends waiting: smaller bites
                    size = max(min(MIN_BATCH, retention.batch_size), size // 2)
                elif took < BATCH_TARGET_SECONDS / 4:
                    size = min(retention.batch_size, size * 2)
            if following is None:
                break
            cursor = following
            if ids:
                stop.wait(retention.batch_pause)  # the write lock is free meanwhile: sends go first
        return deleted

    def _give_back_pages(self, stop: threading.Event) -> int:
        """Shrink the file by the free pages beyond a reserve, a step at a time (auto_vacuum = INCREMENTAL only);
        how many bytes went back to the file system."""
        try:
            pages = self.store.pages()
        except StoreError as error:
            log.warning("retention: cannot read the freelist: %s", error)
            return 0
        if pages["auto_vacuum"] != "incremental":
            return 0
        size = pages["page_size"]
        keep, step = KEEP_FREE_BYTES // size, max(1, VACUUM_STEP_BYTES // size)
        excess, given = pages["freelist_count"] - keep, 0
        while excess > 0 and not stop.is_set():
            try:
                freed = self.store.incremental_vacuum(min(step, excess))
            except StoreError as error:
                log.warning("retention: incremental vacuum failed (the pages stay free for reuse): %s", error)
                break
            if freed <= 0:
                break
            given += freed
            excess -= freed
            stop.wait(self.settings.retention.batch_pause)
        return given * size

    def _checkpoint_when_idle(self) -> str:
        """Truncate the write-ahead log when it grew past its usual size (a large batch makes it tens of MB, and
        SQLite keeps a log file at its largest) and nothing is queued or being sent (it holds writers back while
        it copies): "truncated", "busy" (a reader kept it), "skipped" or "failed". A log of the usual size is left
        to SQLite's own checkpoints: it is written over from its start again, where truncating it would make the
        file system allocate its blocks anew (journal writes), and an idle gateway would write every pass."""
        try:
            if self.store.file_sizes()["wal_bytes"] <= WAL_KEPT_BYTES or self.store.in_flight():
                return "skipped"
            return "busy" if self.store.checkpoint(truncate=True, busy_ms=CHECKPOINT_BUSY_MS)["busy"] else "truncated"
        except StoreError as error:
            log.warning("retention: checkpoint failed: %s", error)
            return "failed"

    def storage_summary(self) -> dict:
        """What `modemgw status` and the dashboard show: {"database_bytes", "wal_bytes", "free_page_bytes",
        "auto_vacuum", "page_size", "new_page_size" (new databases'), "disk_free_bytes", "oldest_message_at",
        "oldest_inbox_at", "retention" (days per subject; 0: forever), "last_prune" (the last pass's result, or
        None)}. Parts that cannot be read are None."""
        retention = self.settings.retention
        summary: dict[str, Any] = {**self.store.file_sizes(), "free_page_bytes": None, "auto_vacuum": None,
                                   "page_size": None, "new_page_size": PAGE_SIZE,
                                   "disk_free_bytes": self.store.free_bytes(), "oldest_message_at": None,
                                   "oldest_inbox_at": None, "last_prune": getattr(self, "_last_prune", None),
                                   "retention": {"messages_days": retention.messages_days,
                                                 "inbox_days": retention.inbox_days,
                                                 "webhook_deliveries_days": retention.webhook_deliveries_days,
                                                 "audit_days": retention.audit_days}}
        try:
            pages = self.store.pages()
            oldest = self.store.oldest_kept()
        except StoreError as error:
            log.warning("retention: cannot read the database's size and oldest rows: %s", error)
            return summary
        summary.update(free_page_bytes=pages["freelist_count"] * pages["page_size"], auto_vacuum=pages["auto_vacuum"],
                       page_size=pages["page_size"], oldest_message_at=oldest["message_at"],
                       oldest_inbox_at=oldest["inbox_at"])
        return summary

    def vacuum_database(self) -> dict:
        """VACUUM (store.vacuum): the whole file rewritten with auto_vacuum = INCREMENTAL and the page size of new
        databases. For `modemgw vacuum`, with the gateway stopped. Raises StoreError."""
        return self.store.vacuum()


def describe_days(days: float) -> str:
    """A retention for people: "forever", "1 day", "90 days"."""
    if days <= 0:
        return "forever"
    shown = f"{days:g}"
    return f"{shown} day" if shown == "1" else f"{shown} days"


def describe_bytes(count: int | None) -> str:
    """A size for people: "812 KB", "57.3 MB", "1.2 GB" (decimal units, as disks are sold)."""
    if count is None:
        return "unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 1e3:.0f} KB"


__all__ = ["SUBJECTS", "Retention", "describe_bytes", "describe_days"]
