"""modemgw: an on-premises SMS gateway for a pool of USB GSM modems."""

__version__ = "0.1.0.dev0"
