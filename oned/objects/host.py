"""The HOST object (mirrors ``Host.h``, ``HostShare.h``).

Skeleton: the hosts issue fills in HOST_SHARE, MONITORING and the state machine.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oned.objects.base import esc, int_of, parse_xml, template_of, text_of
from oned.template import Template

INIT = 0
MONITORING_MONITORED = 1
MONITORED = 2
ERROR = 3
DISABLED = 4
MONITORING_ERROR = 5
MONITORING_INIT = 6
MONITORING_DISABLED = 7
OFFLINE = 8


@dataclass
class Host:
    oid: int
    name: str
    state: int = INIT
    prev_state: int = INIT
    im_mad: str = ""
    vm_mad: str = ""
    cluster_id: int = 0
    cluster: str = "default"
    template: Template = field(default_factory=Template)

    TABLE: ClassVar[str] = "host_pool"
    ROOT: ClassVar[str] = "HOST"

    def to_xml(self) -> str:
        return (
            f"<HOST><ID>{self.oid}</ID><NAME>{esc(self.name)}</NAME>"
            f"<STATE>{self.state}</STATE><PREV_STATE>{self.prev_state}</PREV_STATE>"
            f"<IM_MAD><![CDATA[{self.im_mad}]]></IM_MAD>"
            f"<VM_MAD><![CDATA[{self.vm_mad}]]></VM_MAD>"
            f"<CLUSTER_ID>{self.cluster_id}</CLUSTER_ID><CLUSTER>{esc(self.cluster)}</CLUSTER>"
            f"{self.template.to_xml()}</HOST>"
        )

    def columns(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "uid": 0,
            "gid": 0,
            "owner_u": 1,
            "group_u": 0,
            "other_u": 0,
            "cid": self.cluster_id,
        }

    @classmethod
    def from_xml(cls, body: str) -> Host:
        root = parse_xml(body)
        return cls(
            oid=int_of(root, "ID"),
            name=text_of(root, "NAME"),
            state=int_of(root, "STATE"),
            prev_state=int_of(root, "PREV_STATE"),
            im_mad=text_of(root, "IM_MAD"),
            vm_mad=text_of(root, "VM_MAD"),
            cluster_id=int_of(root, "CLUSTER_ID"),
            cluster=text_of(root, "CLUSTER"),
            template=template_of(root),
        )

    def copy(self) -> Host:
        return _copy.deepcopy(self)
