"""Hooks and the event bus end to end: a real oned whose one_hm publishes on ZeroMQ to a
pyzmq subscriber here, pyone for the calls, a hook result sent to the REP socket as a
Hook Execution Manager sends it, and a queued event surviving a kill -9."""

from __future__ import annotations

import base64
import signal
import socket
import time
import xmlrpc.client
from pathlib import Path

import pyone
import pytest
import zmq

from . import xsd
from .conftest import Daemon, MakeDaemon, free_port

pytestmark = pytest.mark.slow

HOLD_HOOK = (
    'NAME="held"\nTYPE="state"\nRESOURCE="VM"\nON="CUSTOM"\nSTATE="HOLD"\n'
    'LCM_STATE="LCM_INIT"\nCOMMAND="/usr/bin/true"\nARGUMENTS="$TEMPLATE"'
)


def _receive(sub: zmq.Socket[bytes], wanted: str, timeout: float, poke: object = None) -> str:
    """Messages until one with key ``wanted``; returns its decoded content. ``poke`` is
    called now and then (an API call that makes events flow)."""
    deadline = time.monotonic() + timeout
    last_poke = 0.0
    while time.monotonic() < deadline:
        if poke is not None and time.monotonic() - last_poke > 0.5:
            poke()  # type: ignore[operator]
            last_poke = time.monotonic()
        if sub.poll(100):
            key, content = sub.recv_multipart()
            if key.decode() == wanted:
                return base64.b64decode(content).decode()
    raise AssertionError(f"no {wanted!r} on the bus")


def _wait_port_free(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq binds
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.1)
    raise AssertionError(f"port {port} still taken")


def test_bus_and_hook_log(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    pub, rep = free_port(), free_port()
    daemon: Daemon = make_daemon(tmp_path / "one", replace_conf={"-p 0 -l 0": f"-p {pub} -l {rep}"})
    daemon.start()
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    raw = xmlrpc.client.ServerProxy(daemon.url)
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://127.0.0.1:{pub}")
    sub.setsockopt(zmq.SUBSCRIBE, b"EVENT")
    try:
        # the subscription is live once our own calls show up
        _receive(sub, "EVENT API one.system.version 1", 10, one.system.version)
        uid = one.user.allocate("hookuser", "pw", "")
        doc = _receive(sub, "EVENT API one.user.allocate 1", 5)
        assert doc.startswith(
            "<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE><CALL>one.user.allocate</CALL>"
            "<CALL_INFO><RESULT>1</RESULT><PARAMETERS><PARAMETER><POSITION>1</POSITION>"
            "<TYPE>IN</TYPE><VALUE>****</VALUE></PARAMETER>"
        )
        assert f"<VALUE>{uid}</VALUE>" in doc and "<VALUE>pw</VALUE>" not in doc
        if xsd.available():
            assert xsd.errors(doc) == []

        hkid = one.hook.allocate(HOLD_HOOK)
        vid = one.vm.allocate('NAME="held"\nCPU="0.1"\nMEMORY="64"', True)
        state = _receive(sub, f"EVENT STATE VM/HOLD/LCM_INIT/{vid} ", 5)
        assert f"<RESOURCE_ID>{vid}</RESOURCE_ID><REMOTE_HOST/><VM><ID>{vid}</ID>" in state

        # kill -9: the event its hook has not answered is still there after the restart
        daemon.stop(signal.SIGKILL)
        _wait_port_free(pub)
        _wait_port_free(rep)
        daemon.start()
        one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
        again = _receive(sub, f"EVENT VM {vid}/HOLD/LCM_INIT ", 15, one.hookpool.info)
        assert again == state

        # a Hook Execution Manager's result becomes a hook-log record
        req = context.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(f"tcp://127.0.0.1:{rep}")
        result = (
            "<ARGUMENTS>QUJD</ARGUMENTS><EXECUTION_RESULT><COMMAND>/usr/bin/true</COMMAND>"
            "<STDOUT/><STDERR/><CODE>0</CODE></EXECUTION_RESULT>"
        )
        req.send(f"0 {hkid} {base64.b64encode(result.encode()).decode()}".encode())
        assert req.poll(5000)
        assert req.recv() == b"ACK"
        req.close()
        deadline = time.monotonic() + 10
        log = ""
        while time.monotonic() < deadline:
            log = raw.one.hooklog.info(daemon.session, -1, -1, hkid, 0)[1]
            if "<HOOK_EXECUTION_RECORD>" in log:
                break
            time.sleep(0.1)
        assert f"<HOOK_ID>{hkid}</HOOK_ID><EXECUTION_ID>0</EXECUTION_ID>" in log
        assert f"{result}</HOOK_EXECUTION_RECORD>" in log
        info = raw.one.hook.info(daemon.session, hkid)[1]
        assert "<HOOKLOG><HOOK_EXECUTION_RECORD>" in info
        if xsd.available():
            assert xsd.errors(info) == []
        assert one.hooklog.info(-1, -1, hkid, 1) is not None
        hook = one.hook.info(hkid)
        assert (hook.NAME, hook.TYPE, hook.TEMPLATE["STATE"]) == ("held", "state", "HOLD")
        assert [h.ID for h in one.hookpool.info().HOOK] == [hkid]
        one.hook.delete(hkid)
    finally:
        sub.close()
        context.term()
