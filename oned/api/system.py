"""``one.system.version`` and ``one.system.config`` (mirrors ``SystemAPI``)."""

from __future__ import annotations

from oned import __version__
from oned.api.context import Call
from oned.api.registry import rpc
from oned.core import Core
from oned.template import cdata

DB_HIDDEN = ("BACKEND", "SERVER", "PORT", "USER", "PASSWD", "DB_NAME")


@rpc("one.system.version", "")
async def version(core: Core, call: Call) -> str:
    """Returns the OpenNebula core version."""
    return __version__


def config_xml(core: Core, masked: bool) -> str:
    out = ["<OPENNEBULA_CONFIGURATION>"]
    for name, value in core.config.template.sorted_items():
        if isinstance(value, dict):
            out.append(f"<{name}>")
            for key in sorted(value):
                if masked and name == "DB" and key in DB_HIDDEN:
                    out.append(f"<{key}>***</{key}>")
                else:
                    out.append(f"<{key}>{cdata(value[key])}</{key}>")
            out.append(f"</{name}>")
        else:
            out.append(f"<{name}>{cdata(value)}</{name}>")
    out.append("</OPENNEBULA_CONFIGURATION>")
    return "".join(out)


@rpc("one.system.config", "")
async def config(core: Core, call: Call) -> str:
    """Returns the OpenNebula configuration."""
    return config_xml(core, masked=call.caller.gid != 0)
