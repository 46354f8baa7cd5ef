"""The simulated modem: an AT interpreter behind a real pty, and a simulated network joining simulated SIMs.

Tests, the demo and the benchmarks drive the real driver through it; gammu and smstools3 accept it too.
"""

from modemgw.sim.interpreter import SimIdentity, SimModem
from modemgw.sim.network import Network, NetworkSettings
from modemgw.sim.profiles import PROFILES, Profile
from modemgw.sim.runner import FAULTS, Simulator

__all__ = ["FAULTS", "PROFILES", "Network", "NetworkSettings", "Profile", "SimIdentity", "SimModem", "Simulator"]
