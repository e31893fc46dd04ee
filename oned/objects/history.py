"""A VM's placement record (mirrors ``History.h``/``History.cc``).

One record per placement epoch: host, cluster, system datastore, drivers and the
prolog/running/epilog time stamps, plus the action that closed it and who asked for
it. The ``history`` table stores each record with the VM document of the moment
(``to_db_xml``), which is what ``one.vmpool.accounting`` returns.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass
from typing import ClassVar

from lxml import etree

from oned.objects.base import esc, parse_xml


class VMAction:
    """``VMActions::Action``: the numeric ids stored in ``HISTORY/ACTION``."""

    NONE = 0
    MIGRATE = 1
    LIVE_MIGRATE = 2
    UNDEPLOY = 5
    UNDEPLOY_HARD = 6
    HOLD = 7
    RELEASE = 8
    STOP = 9
    SUSPEND = 10
    RESUME = 11
    DELETE = 13
    DELETE_RECREATE = 14
    REBOOT = 15
    REBOOT_HARD = 16
    RESCHED = 17
    UNRESCHED = 18
    POWEROFF = 19
    POWEROFF_HARD = 20
    TERMINATE = 27
    TERMINATE_HARD = 28
    DEPLOY = 30
    CHOWN = 31
    CHMOD = 32
    RENAME = 34
    UPDATE = 36
    RECOVER = 42
    MONITOR = 44
    POWEROFF_MIGRATE = 48
    POWEROFF_HARD_MIGRATE = 49


#: ``one.vm.action`` names and their ids.
ACTION_NAMES: dict[str, int] = {
    "terminate-hard": VMAction.TERMINATE_HARD,
    "terminate": VMAction.TERMINATE,
    "undeploy-hard": VMAction.UNDEPLOY_HARD,
    "undeploy": VMAction.UNDEPLOY,
    "hold": VMAction.HOLD,
    "release": VMAction.RELEASE,
    "stop": VMAction.STOP,
    "suspend": VMAction.SUSPEND,
    "resume": VMAction.RESUME,
    "reboot-hard": VMAction.REBOOT_HARD,
    "reboot": VMAction.REBOOT,
    "resched": VMAction.RESCHED,
    "unresched": VMAction.UNRESCHED,
    "poweroff-hard": VMAction.POWEROFF_HARD,
    "poweroff": VMAction.POWEROFF,
}


@dataclass
class History:
    """``<HISTORY>``: one placement of a VM."""

    oid: int
    seq: int
    hostname: str = ""
    hid: int = -1
    cid: int = -1
    stime: int = 0
    etime: int = 0
    vm_mad: str = ""
    tm_mad: str = ""
    ds_id: int = 0
    plan_id: int = -1
    action_id: int = 0
    pstime: int = 0
    petime: int = 0
    rstime: int = 0
    retime: int = 0
    estime: int = 0
    eetime: int = 0
    action: int = VMAction.NONE
    uid: int = -1
    gid: int = -1
    req_id: int = -1

    TABLE: ClassVar[str] = "history"

    def to_xml(self, vm_xml: str = "") -> str:
        """The full record (with the VM document inside for the ``history`` table)."""
        return (
            f"<HISTORY><OID>{self.oid}</OID><SEQ>{self.seq}</SEQ>"
            f"<HOSTNAME>{esc(self.hostname)}</HOSTNAME><HID>{self.hid}</HID>"
            f"<CID>{self.cid}</CID><STIME>{self.stime}</STIME><ETIME>{self.etime}</ETIME>"
            f"<VM_MAD><![CDATA[{self.vm_mad}]]></VM_MAD>"
            f"<TM_MAD><![CDATA[{self.tm_mad}]]></TM_MAD><DS_ID>{self.ds_id}</DS_ID>"
            f"<PLAN_ID>{self.plan_id}</PLAN_ID><ACTION_ID>{self.action_id}</ACTION_ID>"
            f"<PSTIME>{self.pstime}</PSTIME><PETIME>{self.petime}</PETIME>"
            f"<RSTIME>{self.rstime}</RSTIME><RETIME>{self.retime}</RETIME>"
            f"<ESTIME>{self.estime}</ESTIME><EETIME>{self.eetime}</EETIME>"
            f"<ACTION>{self.action}</ACTION><UID>{self.uid}</UID><GID>{self.gid}</GID>"
            f"<REQUEST_ID>{self.req_id}</REQUEST_ID>{vm_xml}</HISTORY>"
        )

    def to_xml_short(self) -> str:
        """``History::to_xml_short``: the record inside a short ``VM_POOL`` VM."""
        return (
            f"<HISTORY><OID>{self.oid}</OID><SEQ>{self.seq}</SEQ>"
            f"<HOSTNAME><![CDATA[{self.hostname}]]></HOSTNAME><HID>{self.hid}</HID>"
            f"<CID>{self.cid}</CID><DS_ID>{self.ds_id}</DS_ID>"
            f"<VM_MAD><![CDATA[{self.vm_mad}]]></VM_MAD>"
            f"<TM_MAD><![CDATA[{self.tm_mad}]]></TM_MAD>"
            f"<ACTION><![CDATA[{self.action}]]></ACTION></HISTORY>"
        )

    @classmethod
    def from_element(cls, node: etree._Element) -> History:
        # One pass over the children (a find() per field costs ten times more, and a
        # daemon with 10,000 VMs reads a record per placed VM at start).
        texts = {child.tag: child.text for child in node}

        def text(tag: str) -> str:
            return texts.get(tag) or ""

        def num(tag: str, default: int = 0) -> int:
            try:
                return int(texts.get(tag) or "")
            except ValueError:
                return default

        return cls(
            oid=num("OID"),
            seq=num("SEQ"),
            hostname=text("HOSTNAME"),
            hid=num("HID", -1),
            cid=num("CID", -1),
            stime=num("STIME"),
            etime=num("ETIME"),
            vm_mad=text("VM_MAD"),
            tm_mad=text("TM_MAD"),
            ds_id=num("DS_ID"),
            plan_id=num("PLAN_ID", -1),
            action_id=num("ACTION_ID"),
            pstime=num("PSTIME"),
            petime=num("PETIME"),
            rstime=num("RSTIME"),
            retime=num("RETIME"),
            estime=num("ESTIME"),
            eetime=num("EETIME"),
            action=num("ACTION"),
            uid=num("UID", -1),
            gid=num("GID", -1),
            req_id=num("REQUEST_ID", -1),
        )

    @classmethod
    def from_xml(cls, body: str) -> History:
        return cls.from_element(parse_xml(body))

    def copy(self) -> History:
        return _copy.copy(self)

    def successor(self, seq: int, now: int) -> History:
        """``VirtualMachine::cp_history``: a new record on the same placement."""
        return History(
            self.oid,
            seq,
            self.hostname,
            self.hid,
            self.cid,
            now,
            0,
            self.vm_mad,
            self.tm_mad,
            self.ds_id,
            rstime=now,
        )
