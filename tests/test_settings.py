"""The settings dataclasses live in a leaf module: reading a configuration loads no port, thread or database code."""

import subprocess
import sys

import modemgw.config
import modemgw.gateway
import modemgw.modem
import modemgw.pool
from modemgw import settings


def test_importing_the_configuration_loads_neither_the_pool_nor_the_serial_port_code():
    probe = ("import sys, modemgw.config; "
             "print(' '.join(sorted(name for name in ('modemgw.pool', 'modemgw.link', 'modemgw.modem', "
             "'modemgw.gateway', 'modemgw.store', 'modemgw.hotplug', 'serial') if name in sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []


def test_the_settings_are_the_same_classes_wherever_they_are_imported_from():
    assert modemgw.pool.ModemConfig is modemgw.config.ModemConfig is settings.ModemConfig
    assert modemgw.pool.PoolSettings is modemgw.config.PoolSettings is settings.PoolSettings
    assert modemgw.gateway.GatewaySettings is modemgw.config.GatewaySettings is settings.GatewaySettings
    assert modemgw.gateway.Route is modemgw.config.Route is settings.Route
    assert modemgw.modem.ModemSettings is modemgw.pool.ModemSettings is settings.ModemSettings
    assert modemgw.pool.PoolSettings().modem == settings.ModemSettings()
