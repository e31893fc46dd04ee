"""Driver families and their message types (mirrors ``include/ProtocolMessages.h``).

One ``Enum`` per family lists the message types exactly as on the wire; anything else
is ``UNDEFINED``. :class:`FamilySpec` adds what the core's message class templates and
managers fix per family: payload encoding, the request STATUS, the ``oned.conf``
section, the log module tag, which requests expect no reply, and the default timeout
of the synchronous ones.

The information family has two dialects. ``IM`` is oned <-> ``onemonitord``
(``im_msg_t``); ``MONITOR`` is the monitord <-> IM-driver dialect (``monitor_msg_t``,
with timestamps) that ``one_im_sh``/``one_im_ssh`` speak. An ``IM_MAD`` whose
executable is ``onemonitord`` uses the first; any other IM_MAD is driven directly in
the second, our core doing monitord's part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from oned.drivers.message import (
    MessageFormatError,
    b64decode,
    b64encode,
    zb64decode,
    zb64encode,
)

__all__ = [
    "AuthManagerMessages",
    "Family",
    "FamilySpec",
    "HookManagerMessages",
    "IPAMManagerMessages",
    "ImageManagerMessages",
    "InformationManagerMessages",
    "MarketPlaceManagerMessages",
    "MonitorDriverMessages",
    "SchedulerManagerMessages",
    "TransferManagerMessages",
    "VMManagerMessages",
]


class VMManagerMessages(Enum):
    """``vm_msg_t``."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    DEPLOY = "DEPLOY"
    SHUTDOWN = "SHUTDOWN"
    RESET = "RESET"
    REBOOT = "REBOOT"
    CANCEL = "CANCEL"
    CLEANUP = "CLEANUP"
    CHECKPOINT = "CHECKPOINT"
    SAVE = "SAVE"
    RESTORE = "RESTORE"
    MIGRATE = "MIGRATE"
    ATTACHDISK = "ATTACHDISK"
    DETACHDISK = "DETACHDISK"
    ATTACHNIC = "ATTACHNIC"
    DETACHNIC = "DETACHNIC"
    SNAPSHOTCREATE = "SNAPSHOTCREATE"
    SNAPSHOTREVERT = "SNAPSHOTREVERT"
    SNAPSHOTDELETE = "SNAPSHOTDELETE"
    DISKSNAPSHOTCREATE = "DISKSNAPSHOTCREATE"
    DISKSNAPSHOTREVERT = "DISKSNAPSHOTREVERT"
    RESIZEDISK = "RESIZEDISK"
    UPDATECONF = "UPDATECONF"
    UPDATESG = "UPDATESG"
    DRIVER_CANCEL = "DRIVER_CANCEL"
    LOG = "LOG"
    RESIZE = "RESIZE"
    BACKUP = "BACKUP"
    UPDATENIC = "UPDATENIC"
    BACKUPCANCEL = "BACKUPCANCEL"
    EXEC = "EXEC"
    EXEC_CANCEL = "EXEC_CANCEL"


class TransferManagerMessages(Enum):
    """``transfer_msg_t``."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    TRANSFER = "TRANSFER"
    DRIVER_CANCEL = "DRIVER_CANCEL"
    LOG = "LOG"


class InformationManagerMessages(Enum):
    """``im_msg_t`` (oned <-> onemonitord)."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    HOST_LIST = "HOST_LIST"
    UPDATE_HOST = "UPDATE_HOST"
    DEL_HOST = "DEL_HOST"
    START_MONITOR = "START_MONITOR"
    STOP_MONITOR = "STOP_MONITOR"
    HOST_STATE = "HOST_STATE"
    VM_STATE = "VM_STATE"
    VM_EXEC = "VM_EXEC"
    HOST_SYSTEM = "HOST_SYSTEM"
    RAFT_STATUS = "RAFT_STATUS"


class MonitorDriverMessages(Enum):
    """``monitor_msg_t`` (monitord <-> IM drivers and probes)."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    MONITOR_VM = "MONITOR_VM"
    BEACON_HOST = "BEACON_HOST"
    MONITOR_HOST = "MONITOR_HOST"
    SYSTEM_HOST = "SYSTEM_HOST"
    STATE_VM = "STATE_VM"
    START_MONITOR = "START_MONITOR"
    STOP_MONITOR = "STOP_MONITOR"
    LOG = "LOG"
    EXEC_VM = "EXEC_VM"


class ImageManagerMessages(Enum):
    """``image_msg_t`` (DATASTORE_MAD)."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    CP = "CP"
    CLONE = "CLONE"
    STAT = "STAT"
    MKFS = "MKFS"
    RM = "RM"
    MONITOR = "MONITOR"
    SNAP_DELETE = "SNAP_DELETE"
    SNAP_REVERT = "SNAP_REVERT"
    SNAP_FLATTEN = "SNAP_FLATTEN"
    RESTORE = "RESTORE"
    INCREMENT_FLATTEN = "INCREMENT_FLATTEN"
    LOG = "LOG"


class AuthManagerMessages(Enum):
    """``auth_msg_t``."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    AUTHORIZE = "AUTHORIZE"
    AUTHENTICATE = "AUTHENTICATE"
    LOG = "LOG"


class IPAMManagerMessages(Enum):
    """``ipam_msg_t``."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    REGISTER_ADDRESS_RANGE = "REGISTER_ADDRESS_RANGE"
    UNREGISTER_ADDRESS_RANGE = "UNREGISTER_ADDRESS_RANGE"
    GET_ADDRESS = "GET_ADDRESS"
    ALLOCATE_ADDRESS = "ALLOCATE_ADDRESS"
    FREE_ADDRESS = "FREE_ADDRESS"
    VNET_CREATE = "VNET_CREATE"
    VNET_DELETE = "VNET_DELETE"
    LOG = "LOG"


class MarketPlaceManagerMessages(Enum):
    """``market_msg_t``."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    IMPORT = "IMPORT"
    DELETE = "DELETE"
    MONITOR = "MONITOR"
    LOG = "LOG"


class HookManagerMessages(Enum):
    """``hook_msg_t``."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    EXECUTE = "EXECUTE"
    RETRY = "RETRY"
    LOG = "LOG"


class SchedulerManagerMessages(Enum):
    """``scheduler_msg_t``."""

    UNDEFINED = "UNDEFINED"
    INIT = "INIT"
    FINALIZE = "FINALIZE"
    PLACE = "PLACE"
    OPTIMIZE = "OPTIMIZE"
    LOG = "LOG"


@dataclass(frozen=True)
class FamilySpec:
    """What the core fixes for one family.

    Attributes:
        section: The ``oned.conf`` vector attribute declaring its drivers.
        messages: The family's message-type enum.
        log_tag: oned.log module tag of its manager.
        encode: Payloads are base64 both ways (message class flag).
        compress: Payloads are zlib-compressed before base64.
        has_timestamp: Lines carry a TIMESTAMP after the id.
        request_status: STATUS written in core requests.
        single_name: Internal name when only the first section is used.
        object_log: ``LOG`` lines with an id >= 0 go to that VM's log.
        track_replies: Requests are answered by (type, id); the manager keeps them
            in flight and drops replies that match none.
        no_reply: Request types that are never answered.
        unsolicited: Reply types accepted without a matching request.
        reply_id: Request types whose reply carries a fixed id.
        sync_timeouts: Default seconds for request/response actions.
        batch_delay: Seconds requests wait to be written together (hook events).
    """

    section: str
    messages: type[Enum]
    log_tag: str
    encode: bool = False
    compress: bool = False
    has_timestamp: bool = False
    request_status: str = ""
    single_name: str | None = None
    object_log: bool = False
    track_replies: bool = True
    no_reply: frozenset[str] = frozenset({"INIT", "FINALIZE", "DRIVER_CANCEL"})
    unsolicited: frozenset[str] = frozenset({"LOG"})
    reply_id: dict[str, int] = field(default_factory=dict)
    sync_timeouts: dict[str, float] = field(default_factory=dict)
    #: Seconds requests wait to be written together (one pipe write for a burst of
    #: events; 0: each is written at once).
    batch_delay: float = 0.0

    def is_known(self, action: str) -> bool:
        """Whether ``action`` is a defined (non-UNDEFINED) type of the family."""
        return action in self.messages.__members__ and action != "UNDEFINED"

    def encode_payload(self, payload: str) -> str:
        """Apply the family's automatic payload encoding (core -> driver)."""
        if not payload or not self.encode:
            return payload
        return zb64encode(payload) if self.compress else b64encode(payload)

    def decode_payload(self, payload: str) -> str:
        """Undo the family's automatic payload encoding (driver -> core).

        Raises:
            MessageFormatError: A compressed payload does not inflate.
        """
        if not payload or not self.encode:
            return payload
        return zb64decode(payload) if self.compress else b64decode(payload)


SYNC_TIMEOUT: Final = 90.0
RESTORE_TIMEOUT: Final = 180.0


class Family(Enum):
    """The driver families of ``oned.conf``."""

    VMM = FamilySpec(
        section="VM_MAD",
        messages=VMManagerMessages,
        log_tag="VMM",
        object_log=True,
    )
    TM = FamilySpec(
        section="TM_MAD",
        messages=TransferManagerMessages,
        log_tag="TrM",
        single_name="transfer_exe",
        object_log=True,
    )
    IM = FamilySpec(
        section="IM_MAD",
        messages=InformationManagerMessages,
        log_tag="InM",
        encode=True,
        compress=True,
        request_status="-",
        track_replies=False,
    )
    MONITOR = FamilySpec(
        section="IM_MAD",
        messages=MonitorDriverMessages,
        log_tag="InM",
        encode=True,
        compress=True,
        has_timestamp=True,
        request_status="-",
        unsolicited=frozenset(
            {
                "LOG",
                "MONITOR_VM",
                "BEACON_HOST",
                "MONITOR_HOST",
                "SYSTEM_HOST",
                "STATE_VM",
                "EXEC_VM",
            }
        ),
    )
    IMAGE = FamilySpec(
        section="DATASTORE_MAD",
        messages=ImageManagerMessages,
        log_tag="ImM",
        single_name="image_exe",
        sync_timeouts={"STAT": SYNC_TIMEOUT, "RESTORE": RESTORE_TIMEOUT},
    )
    AUTH = FamilySpec(
        section="AUTH_MAD",
        messages=AuthManagerMessages,
        log_tag="AuM",
        single_name="auth_exe",
        sync_timeouts={"AUTHENTICATE": SYNC_TIMEOUT, "AUTHORIZE": SYNC_TIMEOUT},
    )
    MARKET = FamilySpec(
        section="MARKET_MAD",
        messages=MarketPlaceManagerMessages,
        log_tag="MKP",
        single_name="market_exe",
    )
    IPAM = FamilySpec(
        section="IPAM_MAD",
        messages=IPAMManagerMessages,
        log_tag="IPM",
        single_name="ipam_exe",
        sync_timeouts={
            "REGISTER_ADDRESS_RANGE": SYNC_TIMEOUT,
            "UNREGISTER_ADDRESS_RANGE": SYNC_TIMEOUT,
            "GET_ADDRESS": SYNC_TIMEOUT,
            "ALLOCATE_ADDRESS": SYNC_TIMEOUT,
            "FREE_ADDRESS": SYNC_TIMEOUT,
        },
    )
    HOOK = FamilySpec(
        section="HM_MAD",
        messages=HookManagerMessages,
        log_tag="HKM",
        single_name="hook_exe",
        track_replies=False,
        batch_delay=0.01,
    )
    SCHED = FamilySpec(
        section="SCHED_MAD",
        messages=SchedulerManagerMessages,
        log_tag="SCM",
        encode=True,
        single_name="sched_exe",
        object_log=True,
        reply_id={"PLACE": 0},
    )

    @property
    def spec(self) -> FamilySpec:
        """The family's :class:`FamilySpec`."""
        value: FamilySpec = self.value
        return value


__all__ += ["RESTORE_TIMEOUT", "SYNC_TIMEOUT", "MessageFormatError"]
