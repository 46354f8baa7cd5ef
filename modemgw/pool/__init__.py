"""Modem workers: one thread per modem owns its port, pulls work from the store, handles its URCs, heals itself.

Modems are bound by identity (IMEI, or the SIM's ICCID), not by tty path: after an unplug the worker looks for its
modem wherever it reappears among the configured ports: the pool's port watcher (modemgw.hotplug) probes each new
port and hands it to the worker bound to that identity, or starts a worker for a modem nobody configured.

    pool.py     Pool: the workers, whom to wake, hot-plug placement, calls on a modem's thread, ModemState reads
    worker.py   ModemWorker: one modem's thread (connect, send, URCs, health, network search, healing)
    tasks.py    what a worker finds on its task queue: Wake, Health, Stop, PortFound, Call (and at.Urc)
    ports.py    PortOwners: one owner per serial port, however it is named
    storage.py  reading a SIM's stored messages and reports, deleting each only once committed
    state.py    ModemState: the read-only view of one modem for outside readers
    alarm.py    Alarm: wakes the pool when a scheduled send or a backed-off retry falls due

What becomes of a message after a send is the gateway's decision (Gateway.part_sent, send_failed); what becomes
of the modem (pause, search, heal) is the worker's.
"""

from modemgw.pool.alarm import Alarm
from modemgw.pool.pool import Pool
from modemgw.pool.ports import PortOwners, same_port
from modemgw.pool.state import ModemState
from modemgw.pool.tasks import Call, Health, PortFound, Stop, Task, Wake
from modemgw.pool.worker import ModemWorker
from modemgw.settings import ModemConfig, ModemSettings, PoolSettings

__all__ = ["Alarm", "Call", "Health", "ModemConfig", "ModemSettings", "ModemState", "ModemWorker", "Pool",
           "PoolSettings", "PortFound", "PortOwners", "Stop", "Task", "Wake", "same_port"]
