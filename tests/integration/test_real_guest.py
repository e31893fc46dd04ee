"""The libvirt deployment file end to end, and a real guest under our core.

In CI: a VM_MAD of TYPE ``kvm`` (run by our dummy VMM program) gets the libvirt domain
as its deployment file, with the defaults of the shipped ``vmm_exec_kvm.conf``, and a
VM_MAD whose defaults give no ARCH fails the boot with oned's texts in the VM log.

Locally, a real guest: OpenNebula's own one_vmm_exec with its kvm remotes and its
one_tm with the ``shared`` transfer scripts, over ssh to ``localhost``, boot a tiny Linux
(the host's kernel plus a busybox initramfs) from a qcow2 image registered in a shared
datastore, on a VM_MAD of TYPE ``qemu``: our libvirt deployment file goes through
``virsh create``. RUNNING, poweroff, resume, snapshot, terminate.

Local only (never in CI): set ``ONE_REAL_GUEST=1`` and ``ONE_SOURCE_TREE`` (an OpenNebula
source tree), on a machine with libvirtd (``qemu:///system``) running, ``ssh localhost``
working without a password for the current user, Debian's qemu-system-x86, qemu-utils,
libvirt-clients, busybox-static, a kernel in /boot, ruby (with ruby-parse-cron and
ruby-nokogiri for OpenNebula's Ruby libraries), xmllint and xorriso. The image
datastore is ``shared`` and the system one ``ssh``, so the disk goes through
``CLONE.ssh shared`` (TM_MAD_SYSTEM), a swap disk through ``MKSWAP ssh`` and the context
CD-ROM through the TM CONTEXT command the VMM runs.
The TM scripts call ``onevm``/``onedatastore show -x``: small shims around XML-RPC stand
in for OpenNebula's Ruby CLI.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyone
import pytest

from . import xsd
from .conftest import Daemon, MakeDaemon
from .test_drivers_opennebula import SOURCE, install

TOOLS = (
    "virsh",
    "qemu-system-x86_64",
    "qemu-img",
    "ssh",
    "ruby",
    "xmllint",
    "cpio",
    "busybox",
    "xorriso",
)
KERNELS = sorted(glob.glob("/boot/vmlinuz-*"))

skip_reason = ""
if os.environ.get("ONE_REAL_GUEST") != "1":
    skip_reason = "set ONE_REAL_GUEST=1 to boot a real guest (local only)"
elif not SOURCE or not Path(SOURCE, "src", "vmm_mad", "exec", "one_vmm_exec").exists():
    skip_reason = "ONE_SOURCE_TREE does not point at an OpenNebula source tree"
elif missing := [t for t in TOOLS if shutil.which(t) is None]:
    skip_reason = f"missing tools: {', '.join(missing)}"
elif not KERNELS:
    skip_reason = "no kernel in /boot"

pytestmark = pytest.mark.slow

EMULATOR = shutil.which("qemu-system-x86_64") or ""
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "ONE-GUEST-UP $(uname -r)"
while true; do sleep 5; echo ONE-GUEST-ALIVE; done
"""

SHIM = """#!{python}
import os, sys, xmlrpc.client
kind = os.path.basename(sys.argv[0])[3:]
args = [a for a in sys.argv[1:] if a not in ("show", "-x", "--xml")]
server = xmlrpc.client.ServerProxy(os.environ["ONE_XMLRPC"])
session = open(os.environ["ONE_AUTH"]).read().strip()
method = {{"vm": "vm", "datastore": "datastore", "image": "image", "host": "host"}}[kind]
reply = getattr(server, f"one.{{method}}.info")(session, int(args[0]))
if not reply[0]:
    sys.stderr.write(str(reply[1]) + "\\n")
    sys.exit(1)
print(reply[1])
"""

CONF = """
VM_MAD = [ NAME = "qemu", SUNSTONE_NAME = "QEMU", EXECUTABLE = "one_vmm_exec",
  ARGUMENTS = "-t 15 -r 0 kvm", DEFAULT = "vmm_exec/vmm_exec_kvm.conf", TYPE = "qemu",
  KEEP_SNAPSHOTS = "yes", LIVE_RESIZE = "yes", SUPPORT_SHAREABLE = "yes" ]
"""


def virsh(*args: str) -> str:
    run = subprocess.run(
        ["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=False
    )
    return run.stdout.strip()


def lay_out(base: Path) -> Path:
    """OpenNebula's one_vmm_exec/one_tm with the kvm and shared remotes in a
    ONE_LOCATION (everything else: our own drivers)."""
    root = base / "one"
    install(root)
    src = Path(SOURCE)
    mads = root / "lib" / "mads"
    for program in mads.iterdir():
        if program.name not in {"one_tm", "one_tm.rb", "madcommon.sh"}:
            program.unlink()
    for name in ("one_vmm_exec", "one_vmm_exec.rb"):
        shutil.copy(src / "src/vmm_mad/exec" / name, mads / name)
        (mads / name).chmod(0o755)
    shutil.copy(src / "src/datastore_mad/one_datastore_exec.rb", mads)
    shutil.copy(src / "src/vnm_mad/one_vnm.rb", root / "lib" / "ruby")
    (root / "etc" / "vmm_exec").mkdir(parents=True)
    shutil.copy(src / "src/vmm_mad/exec/vmm_execrc", root / "etc" / "vmm_exec")
    remotes = root / "var" / "remotes"
    shutil.copytree(src / "src/vmm_mad/remotes/kvm", remotes / "vmm" / "kvm")
    shutil.copytree(
        src / "src/vmm_mad/remotes/lib/kvm", remotes / "vmm" / "kvm", dirs_exist_ok=True
    )
    shutil.copytree(
        src / "src/vmm_mad/remotes/lib",
        remotes / "vmm" / "lib",
        ignore=shutil.ignore_patterns("kvm", "lxc"),
    )
    kvmrc = remotes / "etc" / "vmm" / "kvm" / "kvmrc"
    kvmrc.parent.mkdir(parents=True)
    text = (src / "src/vmm_mad/remotes/kvm/kvmrc").read_text()
    kvmrc.write_text(text.replace("SHUTDOWN_TIMEOUT=180", "SHUTDOWN_TIMEOUT=20"))
    for name in ("shared", "ssh", "common", "lib"):
        shutil.copytree(src / "src/tm_mad" / name, remotes / "tm" / name, dirs_exist_ok=True)
    shutil.copytree(src / "src/tm_mad/shared", remotes / "tm" / "qcow2")
    shutil.copy(src / "src/tm_mad/tm_common.sh", remotes / "tm")
    (remotes / "etc" / "tm" / "ssh").mkdir(parents=True)
    shutil.copy(src / "src/tm_mad/ssh/sshrc", remotes / "etc" / "tm" / "ssh")
    for script in (src / "src/mad/sh").iterdir():
        if script.is_file():
            shutil.copy(script, remotes)
    # one_vmm_exec copies the remotes to the host's /var/tmp/one when they are missing
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for kind in ("onevm", "onedatastore", "oneimage", "onehost"):
        (bin_dir / kind).write_text(SHIM.format(python=sys.executable))
        (bin_dir / kind).chmod(0o755)
    return root


def build_guest(base: Path, image: Path) -> tuple[Path, Path]:
    guest = base / "guest"
    tree = guest / "root"
    for sub in ("bin", "proc", "sys", "dev"):
        (tree / sub).mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", tree / "bin" / "busybox")
    (tree / "init").write_text(INIT)
    (tree / "init").chmod(0o755)
    files = subprocess.run(
        ["find", "."], cwd=tree, capture_output=True, check=True
    ).stdout
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc"], cwd=tree, input=files, capture_output=True, check=True
    ).stdout
    initrd = guest / "initrd"
    initrd.write_bytes(cpio)
    kernel = guest / "vmlinuz"
    shutil.copy(KERNELS[-1], kernel)
    image.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    return kernel, initrd


def wait(what: Any, want: Any, timeout: float = 180.0) -> Any:
    """Poll until ``what()`` is ``want``; a (STATE, LCM_STATE) pair stops on a failure."""
    from oned.objects.vm import LcmState

    deadline = time.monotonic() + timeout
    value = what()
    while value != want and time.monotonic() < deadline:
        if isinstance(value, tuple) and LcmState(value[1]).name.endswith("FAILURE"):
            break
        time.sleep(1)
        value = what()
    return value


@pytest.mark.skipif(bool(skip_reason), reason=skip_reason or "-")
def test_real_guest_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Path(tempfile.mkdtemp(prefix="oned-real-guest-", dir="/var/tmp"))
    base.chmod(0o755)  # libvirt's qemu user reads the disks and the kernel below it
    root = lay_out(base)
    ds_location = root / "var" / "datastores"
    image_file = ds_location / "1" / "tiny.qcow2"
    kernel, initrd = build_guest(base, image_file)
    for path in (root, root / "var", ds_location):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
    console = base / "console.log"

    from oned.locations import packaged_share

    text = (packaged_share() / "etc" / "oned.conf").read_text()
    text = text.replace("-p 2101 -l 2102", "-p 0 -l 0")
    text = text.replace('"-t 15 -d dummy"', '"-t 15 -d dummy,shared,ssh,qcow2"')
    text = text.replace("-p rank ", "-p dummy ")  # placed by one.vm.deploy, no scheduler
    (root / "etc" / "oned.conf").write_text(text + CONF)
    daemon = Daemon(root, password="oneadmin")
    monkeypatch.setenv("PATH", f"{base / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("ONE_XMLRPC", daemon.url)
    monkeypatch.setenv("RUBYLIB", str(root / "lib" / "ruby"))
    daemon.start()
    vid, passed = -1, False
    try:
        one = pyone.OneServer(daemon.url, session=daemon.session, timeout=60)
        one.datastore.update(0, 'TM_MAD="ssh"', 1)  # shared images, ssh system datastore
        one.datastore.update(1, 'DS_MAD="dummy"\nTM_MAD="shared"', 1)
        hid = one.host.allocate("localhost", "dummy", "qemu", -1)
        assert wait(lambda: one.host.info(hid).STATE, 2, 60) == 2
        one.host.update(hid, f'EMULATOR="{EMULATOR}"', 1)
        iid = one.image.allocate(
            f'NAME="tiny"\nTYPE="OS"\nSOURCE="{image_file}"\nFORMAT="qcow2"\nSIZE="16"', 1
        )
        assert wait(lambda: one.image.info(iid).STATE, 1, 60) == 1
        raw = (
            f"<devices><serial type='file'><source path='{console}'/><target port='0'/>"
            "</serial></devices>"
        )
        vid = one.vm.allocate(
            'NAME="real"\nCPU="0.1"\nVCPU="1"\nMEMORY="128"\n'
            f'DISK=[IMAGE_ID="{iid}"]\nDISK=[TYPE="swap",SIZE="8"]\n'
            f'OS=[KERNEL="{kernel}",INITRD="{initrd}",KERNEL_CMD="console=ttyS0"]\n'
            f'RAW=[TYPE="kvm",DATA="{raw}"]\n'
            'CONTEXT=[HELLO="world"]\n'
        )
        one.vm.deploy(vid, hid, False, 0)
        state = wait(lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE), (3, 3))
        assert state == (3, 3), daemon.log()[-4000:] + vm_log(root, vid)
        deployment = (root / "var" / "vms" / str(vid) / "deployment.0").read_text()
        assert deployment.startswith("<domain type='qemu' ")
        assert virsh("domstate", f"one-{vid}") == "running"
        assert wait(lambda: "ONE-GUEST-UP" in read(console), True, 120), read(console)[-2000:]
        prolog = (root / "var" / "vms" / str(vid) / "transfer.0.prolog").read_text()
        assert prolog.startswith(f"CLONE.ssh shared {socket_name()}:{image_file} localhost:")
        context = one.vm.info(vid).TEMPLATE["CONTEXT"]
        iso = ds_location / "0" / str(vid) / f"disk.{context['DISK_ID']}"
        assert iso.is_file(), vm_log(root, vid)  # CONTEXT built by the TM through the VMM
        assert f"<source file='{root}/var//datastores/0/{vid}/disk.2'/>" in deployment
        assert f"MKSWAP ssh 8 localhost:{root}/var//datastores/0/{vid}/disk.1 {vid} 0" in prolog

        one.vm.action("poweroff", vid)
        assert wait(lambda: one.vm.info(vid).STATE, 8) == 8, vm_log(root, vid)
        assert virsh("domstate", f"one-{vid}") in ("", "shut off")
        one.vm.action("resume", vid)
        state = wait(lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE), (3, 3))
        assert state == (3, 3), vm_log(root, vid)
        assert virsh("domstate", f"one-{vid}") == "running"

        snapshot = getattr(one.vm, "snapshotcreate", None)
        if snapshot is not None:
            snapshot(vid, "first")
            state = wait(lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE), (3, 3))
            assert state == (3, 3), vm_log(root, vid)
            assert "first" in virsh("snapshot-list", f"one-{vid}") or "SNAPSHOT" in str(
                one.vm.info(vid).TEMPLATE
            ), vm_log(root, vid)

        one.vm.action("terminate", vid)
        assert wait(lambda: one.vm.info(vid).STATE, 6) == 6, vm_log(root, vid)
        assert virsh("domstate", f"one-{vid}") == ""
        assert not (ds_location / "0" / str(vid)).exists()
        passed = True
    finally:
        if vid >= 0 and virsh("domstate", f"one-{vid}"):
            virsh("destroy", f"one-{vid}")
        daemon.stop()
        if passed:
            shutil.rmtree(base, ignore_errors=True)  # kept for a look when it failed


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def vm_log(root: Path, vid: int) -> str:
    return read(root / "var" / "vms" / str(vid) / "vm.log")[-4000:]


def socket_name() -> str:
    """The front-end's name in transfer scripts (no HOSTNAME in oned.conf)."""
    from types import SimpleNamespace

    from oned.managers.transfer.script import nebula_hostname

    return nebula_hostname(SimpleNamespace(config=SimpleNamespace(get=lambda *_: None)))  # type: ignore[arg-type]


KVM_DUMMY = """
VM_MAD = [ NAME = "kvm", SUNSTONE_NAME = "KVM", EXECUTABLE = "one_vmm_dummy",
  DEFAULT = "vmm_exec/vmm_exec_kvm.conf", TYPE = "kvm", KEEP_SNAPSHOTS = "yes" ]
VM_MAD = [ NAME = "bare", EXECUTABLE = "one_vmm_dummy", TYPE = "qemu" ]
"""


def test_kvm_deployment_file_through_pyone(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    from lxml import etree

    from oned.objects.vm import LcmState

    daemon = make_daemon(tmp_path / "one", extra_conf=KVM_DUMMY)
    daemon.start()
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("kvm01", "dummy", "kvm", -1)
    bare = one.host.allocate("bare01", "dummy", "bare", -1)
    vid = one.vm.allocate(
        'NAME="k"\nCPU="1.5"\nVCPU="2"\nMEMORY="256"\n'
        'GRAPHICS=[TYPE="vnc",LISTEN="0.0.0.0"]\nCONTEXT=[TOKEN="NO",HELLO="world"]\n'
        'FEATURES=[HYPERV="yes"]\nRAW=[TYPE="kvm",DATA="<cpu><topology sockets=\'1\'/></cpu>"]'
    )
    one.vm.deploy(vid, hid, False, 0)
    state = wait(lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE), (3, 3), 30)
    assert state == (3, 3), vm_log(tmp_path / "one", vid)
    vms = tmp_path / "one" / "var" / "vms"
    text = (vms / str(vid) / "deployment.0").read_text()
    dom = etree.fromstring(text.encode())
    assert dom.get("type") == "kvm"
    assert dom.findtext("name") == f"one-{vid}"
    assert dom.findtext("vcpu") == "2"
    assert dom.findtext("cputune/shares") == "1536"
    assert dom.findtext("memory") == str(256 * 1024)
    assert dom.find("os/type").get("machine") == "q35"  # type: ignore[union-attr]
    assert dom.findtext("devices/emulator") == "/usr/bin/qemu-kvm-one"
    port = one.vm.info(vid).TEMPLATE["GRAPHICS"]["PORT"]
    graphics = dom.find("devices/graphics")
    assert graphics is not None and graphics.get("port") == port
    context = dom.find("devices/disk[@device='cdrom']")
    assert context is not None
    ds_location = f"{tmp_path / 'one' / 'var'}//datastores"  # oned's default, as it joins it
    source = context.find("source")
    assert source is not None and source.get("file", "").startswith(f"{ds_location}/0/{vid}/disk.")
    assert dom.find("features/hyperv/relaxed") is not None  # HYPERV_OPTIONS of the conf
    assert dom.find("clock/timer[@name='hypervclock']") is not None
    assert [c.tag for c in dom][-2:] == ["cpu", "metadata"]  # RAW, then the metadata
    assert "<![CDATA[/usr/bin/qemu-kvm-one]]>" in text  # oned's CDATA bodies
    assert one.vm.info(vid).TEMPLATE["TM_MAD_SYSTEM"] == "dummy"
    if xsd.available():
        import xmlrpc.client

        reply = xmlrpc.client.ServerProxy(daemon.url).one.vm.info(daemon.session, vid)
        assert xsd.errors(str(reply[1])) == []

    failing = one.vm.allocate('NAME="b"\nCPU="1"\nMEMORY="64"')
    one.vm.deploy(failing, bare, False, 0)
    boot_failure = (3, int(LcmState.BOOT_FAILURE))
    state = wait(lambda: (one.vm.info(failing).STATE, one.vm.info(failing).LCM_STATE), boot_failure)
    assert state == boot_failure, vm_log(tmp_path / "one", failing)
    deadline = time.monotonic() + 10
    while "error generating" not in vm_log(tmp_path / "one", failing):
        assert time.monotonic() < deadline, vm_log(tmp_path / "one", failing)
        time.sleep(0.2)
    log = vm_log(tmp_path / "one", failing)
    assert "[VMM][E]: No ARCH defined and no default provided." in log
    assert "deploy_action, error generating deployment file:" in log
    assert not (vms / str(failing) / "deployment.0").exists()
    one.vm.action("terminate-hard", vid)
