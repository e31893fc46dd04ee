"""``VirtualMachineManager``: VMM driver actions and replies (mirrors
``VirtualMachineManager.cc`` and ``VirtualMachineManagerProtocol.cc``).

Every action sends ``ACTION <vid> <b64 VMM_DRIVER_ACTION_DATA>`` to the VM_MAD named
by the VM's current history record; replies are events handed to the LifeCycleManager
(``deploy_success``, ``shutdown_failure``...). Before DEPLOY the deployment file
``vms/<vid>/deployment.<seq>`` is written (the VM document, as the ``xml`` driver type
takes it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oned.drivers.families import Family
from oned.drivers.message import b64encode
from oned.log import logger
from oned.managers.lifecycle.vmlog import vm_dir, write_vm_log
from oned.managers.transfer.manager import ds_location
from oned.managers.vmm.nic import NIC_REPLIES
from oned.objects.base import esc
from oned.objects.vm import LcmState, VirtualMachine

if TYPE_CHECKING:
    from oned.core import Core
    from oned.drivers.message import DriverMessage
    from oned.managers.lifecycle.manager import LifeCycleManager

#: Reply type -> (success callback, failure callback) names on the LifeCycleManager.
ROUTES: dict[str, tuple[str, str]] = {
    "DEPLOY": ("deploy_success", "deploy_failure"),
    "RESTORE": ("deploy_success", "deploy_failure"),
    "SHUTDOWN": ("shutdown_success", "shutdown_failure"),
    "CANCEL": ("shutdown_success", "shutdown_failure"),
    "SAVE": ("save_success", "save_failure"),
    "BACKUP": ("backup_success", "backup_failure"),
    "BACKUPCANCEL": ("backup_cancel_success", "backup_cancel_failure"),
    "MIGRATE": ("deploy_success", "deploy_failure"),
    "ATTACHDISK": ("attach_success", "attach_failure"),
    "DETACHDISK": ("detach_success", "detach_failure"),
    "DISKSNAPSHOTCREATE": ("disk_snapshot_success", "disk_snapshot_failure"),
    "RESIZEDISK": ("disk_resize_success", "disk_resize_failure"),
    "SNAPSHOTCREATE": ("snapshot_create_success", "snapshot_create_failure"),
    "SNAPSHOTREVERT": ("snapshot_revert_success", "snapshot_revert_failure"),
    "SNAPSHOTDELETE": ("snapshot_delete_success", "snapshot_delete_failure"),
    "UPDATECONF": ("update_conf_success", "update_conf_failure"),
    "RESIZE": ("resize_success", "resize_failure"),
    "EXEC": ("exec_success", "exec_failure"),
    "EXEC_CANCEL": ("exec_cancel_success", "exec_cancel_failure"),
    "ATTACHNIC": ("attach_nic_success", "attach_nic_failure"),
    "DETACHNIC": ("detach_nic_success", "detach_nic_failure"),
}
_LOG_ONLY = ("REBOOT", "RESET", "CLEANUP")
_ACTION_TEXT = {"REBOOT": "reboot", "RESET": "reset", "CLEANUP": "cleanup"}


def _tag(name: str, value: str) -> str:
    return f"<{name}>{value}</{name}>" if value else f"<{name}/>"


class VirtualMachineManager:
    """Sends VMM actions and turns their replies into LifeCycleManager events."""

    log = logger("VMM")

    def __init__(self, core: Core, drivers: Any) -> None:
        self.core = core
        self.drivers = drivers
        self.lcm: LifeCycleManager | None = None

    def start(self) -> None:
        if self.drivers is None:
            return
        for action in (*ROUTES, *_LOG_ONLY, *NIC_REPLIES):
            self.drivers.register_action(Family.VMM, action, self._on_reply)

    # -- message building --------------------------------------------------------------

    def deployment_file(self, vm: VirtualMachine) -> str:
        current = vm.current
        seq = current.seq if current is not None else 0
        return str(vm_dir(self.core, vm.oid) / f"deployment.{seq}")

    def remote_dir(self, vm: VirtualMachine) -> str:
        current = vm.current
        ds_id = current.ds_id if current is not None else 0
        return f"{ds_location(self.core)}/{ds_id}/{vm.oid}"

    def format_message(
        self,
        vm: VirtualMachine,
        *,
        deployment: bool = False,
        checkpoint: bool = False,
        deploy_id: str | None = None,
        tm_command: str = "",
        tm_rollback: str = "",
        disk_path: str = "",
        migr_host: str = "",
    ) -> str:
        """``format_message``: the base64 ``VMM_DRIVER_ACTION_DATA``."""
        current = vm.current
        if vm.lcm_state in (LcmState.SAVE_MIGRATE, LcmState.MIGRATE) and vm.previous:
            current = vm.previous  # a migration's SAVE/SHUTDOWN/MIGRATE run on the source
        assert current is not None
        ldfile = rdfile = ""
        if deployment:
            ldfile = self.deployment_file(vm)
            rdfile = f"{self.remote_dir(vm)}/deployment.{current.seq}"
        cfile = ""
        if checkpoint:
            cfile = f"{ds_location(self.core)}/{current.ds_id}/{vm.oid}/checkpoint"
        ds = self.core.datastores.get(current.ds_id)
        ds_xml = self.core.datastores.body(ds.oid) if ds is not None else ""
        did = vm.deploy_id if deploy_id is None else deploy_id
        doc = (
            f"<VMM_DRIVER_ACTION_DATA><HOST>{esc(current.hostname)}</HOST>"
            f"{_tag('MIGR_HOST', esc(migr_host))}"
            f"{_tag('DEPLOY_ID', esc(did))}"
            f"{_tag('LOCAL_DEPLOYMENT_FILE', ldfile)}{_tag('REMOTE_DEPLOYMENT_FILE', rdfile)}"
            f"{_tag('CHECKPOINT_FILE', cfile)}{_tag('TM_COMMAND', esc(tm_command))}"
            f"{_tag('TM_COMMAND_ROLLBACK', esc(tm_rollback))}"
            f"{_tag('DISK_TARGET_PATH', esc(disk_path))}{vm.to_xml()}{ds_xml}"
            "</VMM_DRIVER_ACTION_DATA>"
        )
        return b64encode(doc)

    # -- actions ---------------------------------------------------------------------

    def deploy(self, vm: VirtualMachine) -> None:
        """``trigger_deploy``: write the deployment file, then DEPLOY."""
        path = self.deployment_file(vm)
        write_vm_log(
            self.core,
            vm.oid,
            [("VMM", "I", f"Generating deployment file: {path}")],
            self.core.now(),
        )
        from oned.managers.vmm.deployment import DeploymentError, write_deployment

        try:
            write_deployment(self.core, vm, path)  # VM XML or libvirt domain by VM_MAD TYPE
        except (OSError, DeploymentError):
            text = f"deploy_action, error generating deployment file: {path}"
            write_vm_log(self.core, vm.oid, [("VMM", "E", text)], self.core.now())
            if self.lcm is not None:  # trigger_deploy's error_common: log, then the failure
                self.lcm.schedule(self.lcm.deploy_failure, vm.oid)
            return
        command = self.context_command(vm)
        self._send(
            "DEPLOY",
            vm,
            self.format_message(vm, deployment=True, deploy_id="", tm_command=command),
        )

    def restore(self, vm: VirtualMachine) -> None:
        command = self.context_command(vm)
        self._send("RESTORE", vm, self.format_message(vm, checkpoint=True, tm_command=command))

    def context_command(self, vm: VirtualMachine) -> str:
        """``generate_context``: write ``vms/<vid>/context.sh`` and return the TM
        ``CONTEXT`` command the driver runs to build the context disk ("" without
        CONTEXT)."""
        context = vm.template.get_vector("CONTEXT")
        current = vm.current
        if context is None or current is None:
            return ""
        secret = self.core.attr_list("VM_ENCRYPTED_ATTR")
        if secret:
            clear = self.core.one_key.decrypt_template(vm.template, secret)
            context = clear.get_vector("CONTEXT") or context
        lines = ["# Context variables generated by OpenNebula\n"]
        for key in sorted(context):
            value = context[key].replace("'", "'\\''")
            lines.append(f"{key}='{value}'\n")
        path = vm_dir(self.core, vm.oid) / "context.sh"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(lines), encoding="utf-8")
        except OSError:
            return ""
        files = " ".join(f for f in context.get("FILES", "").split() if f)
        sources = f"{path} {files}".strip()
        disk_id = context.get("DISK_ID", "0")
        target = f"{current.hostname}:{self.remote_dir(vm)}/disk.{disk_id}"
        return f"CONTEXT {current.tm_mad} {sources} {target} {vm.oid} {current.ds_id}"

    def shutdown(self, vm: VirtualMachine, hard: bool) -> None:
        self._send("CANCEL" if hard else "SHUTDOWN", vm, self.format_message(vm))

    def migrate(self, vm: VirtualMachine) -> None:
        """``trigger_migrate``: live MIGRATE from the previous host to the current one."""
        from oned.managers.lifecycle.migrate_actions import migrate_command

        current = vm.current
        if current is None or vm.previous is None:
            text = "migrate_action, error VM has no previous history"
            self._local_failure(vm.oid, "MIGRATE", text)
            return
        sysdir = self.remote_dir(vm)
        command = migrate_command(vm, sysdir)
        payload = self.format_message(
            vm, migr_host=current.hostname, tm_command=command, disk_path=sysdir
        )
        self._send("MIGRATE", vm, payload)

    def save(self, vm: VirtualMachine) -> None:
        self._send("SAVE", vm, self.format_message(vm, checkpoint=True))

    def reboot(self, vm: VirtualMachine, hard: bool) -> None:
        self._send("RESET" if hard else "REBOOT", vm, self.format_message(vm))

    def cleanup(self, vm: VirtualMachine) -> None:
        """CLEANUP (recover --delete): destroy the domain if it is still there."""
        self._send("CLEANUP", vm, self.format_message(vm))

    def driver_cancel(self, vm: VirtualMachine) -> None:
        current = vm.current
        if self.drivers is not None and current is not None:
            self.drivers.send(Family.VMM, "DRIVER_CANCEL", vm.oid, "", name=current.vm_mad)

    def _send(self, action: str, vm: VirtualMachine, payload: str) -> None:
        current = vm.current
        name = current.vm_mad if current is not None else ""
        if self.drivers is None or not self.drivers.send(
            Family.VMM, action, vm.oid, payload, name=name
        ):
            self._local_failure(
                vm.oid, action, f"{action.lower()}_action, error getting driver {name}"
            )

    def _local_failure(self, vid: int, action: str, text: str) -> None:
        from oned.drivers.message import DriverMessage

        self._on_reply(DriverMessage(action, "FAILURE", vid, f"- {text}"))

    # -- replies ---------------------------------------------------------------------

    def _on_reply(self, msg: DriverMessage) -> None:
        lcm = self.lcm
        vm = self.core.vms.get(msg.oid)
        if lcm is None or vm is None:
            return
        now = self.core.now()
        if vm.lcm_state == LcmState.LCM_INIT:
            write_vm_log(
                self.core, vm.oid, [("VMM", "W", f"Ignored: {msg.action} {msg.status}")], now
            )
            return
        if msg.action in _LOG_ONLY:
            word = _ACTION_TEXT[msg.action]
            if msg.success:
                text = f"VM successfully {'rebooted' if word != 'cleanup' else 'cleaned'}."
                if msg.action == "RESET":
                    text = "VM successfully rebooted-hard."
                write_vm_log(self.core, vm.oid, [("VMM", "I", text)], now)
            else:
                info = f": {msg.payload}" if msg.payload and not msg.payload.startswith("-") else ""
                write_vm_log(self.core, vm.oid, [("VMM", "E", f"{msg.action}{info}")], now)
            return
        if msg.action in NIC_REPLIES:
            from oned.managers.vmm.nic import on_reply

            on_reply(lcm, msg)
            return
        ok_name, fail_name = ROUTES[msg.action]
        if msg.success:
            deploy_id = ""
            if msg.action == "DEPLOY":
                deploy_id = msg.payload.split()[0] if msg.payload.split() else ""
                if not deploy_id:
                    lcm.schedule(
                        getattr(lcm, fail_name), vm.oid, "Empty deploy ID for virtual machine"
                    )
                    return
            elif msg.action == "BACKUP":  # backup_id size_mb [format]
                deploy_id = msg.payload
            elif msg.action == "SNAPSHOTCREATE":  # the hypervisor's snapshot id
                deploy_id = msg.payload.split()[0] if msg.payload.split() else ""
            lcm.schedule(getattr(lcm, ok_name), vm.oid, deploy_id)
            return
        text = msg.action
        if msg.payload and not msg.payload.startswith("-"):
            text += f": {msg.payload}"
        lcm.schedule(getattr(lcm, fail_name), vm.oid, text)
