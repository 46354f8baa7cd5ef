"""Reading what a modem stored (inbound messages, status reports) and deleting each only once it is committed.

Plain steps on an open modem; `commit(item)` is the worker's, and must raise (StoreError) when the item could not
be stored: the item is then left on the SIM, to be read again.
"""

from __future__ import annotations

from collections.abc import Callable

from modemgw import pdu
from modemgw.errors import ModemError
from modemgw.modem import Modem, StoredMessage

Commit = Callable[[StoredMessage], None]


def default_storage(modem: Modem) -> str:
    return modem.settings.storage or modem.profile.storage


def take_stored(modem: Modem, storage: str, index: int, commit: Commit) -> None:
    """The item a +CMTI/+CDSI announced at `index` of `storage`: read, committed, then deleted."""
    default = default_storage(modem)
    switch = storage != default
    if switch:
        modem.select_storage(storage)
    try:
        item = modem.read_stored(index)
        if item is not None:
            commit(item)
            modem.delete_stored(index)  # deleted only after it is safely in our database
    finally:
        if switch:
            modem.select_storage(default)


def read_everything_stored(modem: Modem, commit: Commit) -> None:
    """At start-up: messages and reports that arrived while nobody listened."""
    storages = [default_storage(modem)]
    if modem.state.report_route == 2:
        storages.append("SR")
    for storage in storages:
        if storage != storages[0]:
            try:
                modem.select_storage(storage)
            except ModemError:
                continue  # no separate report storage: reports land in the message storage
        try:
            for item in modem.list_stored(4):
                if item.message is None or not isinstance(item.message, pdu.Submit):
                    commit(item)
                    modem.delete_stored(item.index)
        finally:
            if storage != storages[0]:
                modem.select_storage(storages[0])


def poll_reports(modem: Modem, commit: Commit) -> int:
    """Read, commit and delete the reports in the report storage ("SR"); how many there were."""
    default = default_storage(modem)
    try:
        modem.select_storage("SR")
    except ModemError:
        return 0
    try:
        found = 0
        for item in modem.list_stored(4):
            if isinstance(item.message, pdu.StatusReport):
                found += 1
                commit(item)
                modem.delete_stored(item.index)
        return found
    finally:
        modem.select_storage(default)


__all__ = ["poll_reports", "read_everything_stored", "take_stored"]
