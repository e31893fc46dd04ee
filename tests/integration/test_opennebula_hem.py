"""OpenNebula's own Hook Execution Manager (``src/hem/onehem-server.rb``, unchanged)
against our daemon: it loads our hooks with ``one.hookpool.info``, subscribes to our
one_hm bus (ZeroMQ PUB), runs an API hook and a VM state hook created while it runs
(it reloads on ``EVENT API one.hook.allocate``), sends the results back on our REP
socket, and ``one.hook.retry`` re-runs one (RETRY on the bus).

Local only: needs ``$ONE_SOURCE_TREE`` (an OpenNebula/one source tree with ``src/hem``,
``src/mad/ruby``, ``src/oca/ruby`` and ``share/rubygems``), Ruby with nokogiri, xmlrpc and
ffi-rzmq (Debian: ruby-nokogiri, ruby-xmlrpc, ruby-ffi-rzmq, libzmq5). Skipped otherwise.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pyone
import pytest
from lxml import etree

from . import xsd
from .conftest import Daemon, free_port

pytestmark = pytest.mark.slow

SOURCE = os.environ.get("ONE_SOURCE_TREE", "")
HEM = Path(SOURCE, "src", "hem", "onehem-server.rb")

skip_reason = ""
if not SOURCE or not HEM.exists():
    skip_reason = "ONE_SOURCE_TREE does not point at an OpenNebula source tree with src/hem"
elif shutil.which("ruby") is None:
    skip_reason = "ruby is not installed"
elif subprocess.run(
    ["ruby", "-e", "require 'ffi-rzmq'"], capture_output=True, check=False
).returncode:
    skip_reason = "the ffi-rzmq gem is not installed (Debian: ruby-ffi-rzmq)"

ACTIVE, RUNNING = 3, 3
T = TypeVar("T")

HOOK_SCRIPT = """#!/bin/sh
# argv: $1 the event's b64 document, $2 a tag; writes one line per run
echo "$2 $1" >> "{out}"
echo "ran $2"
"""


def wait(check: Callable[[], T], what: str, secs: float = 60) -> T:
    deadline = time.monotonic() + secs
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def install_hem(root: Path, url: str, session: str, pub: int, rep: int) -> Path:
    """onehem-server.rb with OCA and the MAD libraries in a ONE_LOCATION of its own, as
    install.sh lays them out (lib/onehem, lib/ruby, etc/onehem-server.conf)."""
    from .drivers_common import install_opennebula

    install_opennebula(Path(SOURCE), root, [])
    (root / "lib" / "onehem").mkdir(parents=True)
    shutil.copy(HEM, root / "lib" / "onehem")
    hooks = root / "hooks"
    hooks.mkdir()
    script = hooks / "record.sh"
    script.write_text(HOOK_SCRIPT.format(out=root / "hook-runs.txt"))
    script.chmod(0o755)
    (root / "etc" / "onehem-server.conf").write_text(
        ":debug_level: 3\n"
        f":hook_base_path: '{hooks}'\n"
        ":remote_hook_base_path: '/var/tmp/one/hooks'\n"
        f":subscriber_endpoint: 'tcp://127.0.0.1:{pub}'\n"
        f":replier_endpoint: 'tcp://127.0.0.1:{rep}'\n"
        ":concurrency: 4\n"
    )
    (root / "one_auth").write_text(session + "\n")
    (root / "var").mkdir(exist_ok=True)
    return root


def hem_process(root: Path, url: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        ONE_LOCATION=str(root),
        ONE_XMLRPC=url,
        ONE_AUTH=str(root / "one_auth"),
        RUBYLIB=str(root / "lib" / "ruby"),
    )
    return subprocess.Popen(
        ["ruby", str(root / "lib" / "onehem" / "onehem-server.rb")],
        env=env,
        cwd=str(root),
        stdout=open(root / "var" / "onehem.out", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


def records(d: Daemon, hook_id: int) -> list[etree._Element]:
    raw = xmlrpc.client.ServerProxy(d.url)
    ok, body, *_ = raw.one.hook.info(d.session, hook_id)
    assert ok, body
    assert not xsd.errors(body), xsd.errors(body)
    return list(etree.fromstring(body.encode()).iterfind("HOOKLOG/HOOK_EXECUTION_RECORD"))


@pytest.mark.skipif(bool(skip_reason), reason=skip_reason or "-")
def test_onehem_server_runs_our_hooks(tmp_path: Path) -> None:  # noqa: PLR0915
    pub, rep = free_port(), free_port()
    d = Daemon(tmp_path / "one", replace_conf={"-p 0 -l 0": f"-p {pub} -l {rep}"})
    d.start(timeout=60)
    hem_root = install_hem(tmp_path / "hem", d.url, d.session, pub, rep)
    hem = hem_process(hem_root, d.url)
    log = hem_root / "var" / "onehem.log"
    runs = hem_root / "hook-runs.txt"
    try:
        # onehem-server.rb logs this once its sockets are connected and the hooks
        # loaded (one.hookpool.info)
        wait(lambda: log.exists() and "Hooks successfully loaded" in log.read_text(), "HEM")
        one = pyone.OneServer(d.url, session=d.session, timeout=30)
        api_hook = one.hook.allocate(
            'NAME="api"\nTYPE="api"\nCALL="one.user.allocate"\n'
            'COMMAND="record.sh"\nARGUMENTS="$API api"\n'
        )
        state_hook = one.hook.allocate(
            'NAME="running"\nTYPE="state"\nRESOURCE="VM"\nON="RUNNING"\n'
            'COMMAND="record.sh"\nARGUMENTS="$TEMPLATE running"\n'
        )
        # the HEM reloads each hook from the allocate event before its own events come
        wait(lambda: log.read_text().count("successfully reloaded") >= 2, "hooks reloaded", 30)

        uid = one.user.allocate("hemuser", "pw", "", [])
        line = wait(
            lambda: next(
                (x for x in runs.read_text().splitlines() if x.startswith("api "))
                if runs.exists()
                else iter(()),
                None,
            ),
            "the API hook to run",
        )
        call_info = etree.fromstring(base64.b64decode(line.split()[1]))
        assert call_info.tag == "CALL_INFO"
        assert call_info.findtext("RESULT") == "1"
        out = call_info.find("PARAMETERS/PARAMETER[TYPE='OUT'][POSITION='2']/VALUE")
        assert out is not None and out.text == str(uid)

        # the result came back on our REP socket: a hook-log record
        record = wait(lambda: records(d, api_hook), "the API hook's record")[0]
        assert record.findtext("EXECUTION_RESULT/CODE") == "0"
        assert base64.b64decode(record.findtext("EXECUTION_RESULT/STDOUT") or "") == b"ran api\n"
        assert record.findtext("ARGUMENTS", "").endswith(" api")

        # a VM state hook: a VM reaching RUNNING through our dummy drivers
        one.host.allocate("host0", "dummy", "dummy", -1)
        wait(lambda: one.host.info(0).STATE == 2, "host0 monitored")
        vid = one.vm.allocate('NAME="v"\nCPU="0.1"\nMEMORY="32"\n', True)
        one.vm.deploy(vid, 0, False, -1)
        wait(
            lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE) == (ACTIVE, RUNNING),
            "VM running",
        )
        line = wait(
            lambda: next(
                (x for x in runs.read_text().splitlines() if x.startswith("running")), None
            ),
            "the state hook to run",
        )
        vm = etree.fromstring(base64.b64decode(line.split()[1]))
        assert (vm.tag, vm.findtext("ID"), vm.findtext("LCM_STATE")) == ("VM", str(vid), "3")
        record = wait(lambda: records(d, state_hook), "the state hook's record")[0]
        assert record.findtext("EXECUTION_RESULT/CODE") == "0"

        # one.hook.retry: RETRY on the bus, onehem-server runs it again, a second record
        exec_id = int(record.findtext("EXECUTION_ID") or -1)
        one.hook.retry(state_hook, exec_id)
        again = wait(lambda: records(d, state_hook)[1:], "the retried execution")[0]
        assert again.findtext("RETRY") == "yes"
        assert again.findtext("EXECUTION_RESULT/CODE") == "0"
        assert sum(x.startswith("running") for x in runs.read_text().splitlines()) == 2

        # a hook deleted is unloaded: no more API runs
        one.hook.delete(api_hook)
        wait(lambda: "key: EVENT API one.hook.delete 1" in log.read_text(), "the delete event")
        one.user.allocate("hemuser2", "pw", "", [])
        time.sleep(2)
        assert sum(x.startswith("api ") for x in runs.read_text().splitlines()) == 1
        assert hem.poll() is None, (hem_root / "var" / "onehem.out").read_text()
    finally:
        hem.terminate()
        try:
            hem.wait(10)
        except subprocess.TimeoutExpired:
            hem.kill()
            hem.wait(5)
        d.stop()
