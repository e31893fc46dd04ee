"""Driver (MAD) machinery: codec, line protocol, process supervisor, manager.

Mirrors OpenNebula's ``include/Driver.h``, ``DriverManager.h``, ``Message.h`` and
``ProtocolMessages.h``.
"""

from oned.drivers.families import Family, FamilySpec
from oned.drivers.manager import DriverManager
from oned.drivers.message import DriverMessage, format_line, parse_line
from oned.drivers.process import DriverProcess, DriverStartError, DriverState

__all__ = [
    "DriverManager",
    "DriverMessage",
    "DriverProcess",
    "DriverStartError",
    "DriverState",
    "Family",
    "FamilySpec",
    "format_line",
    "parse_line",
]
