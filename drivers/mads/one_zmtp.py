"""A minimal ZeroMQ (ZMTP 3.0, NULL mechanism) server for the hook driver.

Just enough of the wire protocol, standard library only, for ``one_hm`` to talk to
OpenNebula's Hook Execution Manager or any libzmq peer: a PUB socket (peers
subscribe by prefix; messages are multipart) and a REP socket (requests arrive with
their routing envelope, which the reply repeats). Each socket binds one TCP
address; every peer gets a reader thread.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04


def _greeting() -> bytes:
    return _SIGNATURE + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _command(name: bytes, body: bytes) -> bytes:
    payload = bytes([len(name)]) + name + body
    return _frame(payload, command=True)


def _frame(data: bytes, more: bool = False, command: bool = False) -> bytes:
    flags = (_MORE if more else 0) | (_COMMAND if command else 0)
    if len(data) > 255:
        return bytes([flags | _LONG]) + struct.pack(">Q", len(data)) + data
    return bytes([flags, len(data)]) + data


def _ready(socket_type: bytes) -> bytes:
    prop = bytes([11]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return _command(b"READY", prop)


class ProtocolError(Exception):
    pass


class _Peer:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.subscriptions: list[bytes] = []
        self.alive = True

    def recv_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("peer closed")
            data += chunk
        return data

    def read_frame(self) -> tuple[int, bytes]:
        flags = self.recv_exact(1)[0]
        if flags & _LONG:
            size = struct.unpack(">Q", self.recv_exact(8))[0]
        else:
            size = self.recv_exact(1)[0]
        return flags, self.recv_exact(size)

    def send(self, data: bytes) -> None:
        with self.lock:
            self.conn.sendall(data)

    def handshake(self, socket_type: bytes) -> None:
        self.send(_greeting())
        greeting = self.recv_exact(64)
        if greeting[0] != 0xFF or greeting[9] != 0x7F or greeting[10] < 3:
            raise ProtocolError("not a ZMTP 3 peer")
        self.send(_ready(socket_type))
        flags, body = self.read_frame()
        if not flags & _COMMAND or body[1 : 1 + body[0]] != b"READY":
            raise ProtocolError("expected READY")


class _Server:
    socket_type = b""

    def __init__(self, host: str, port: int) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(64)
        self.peers: list[_Peer] = []
        self.peers_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(_Peer(conn),), daemon=True).start()

    def _serve(self, peer: _Peer) -> None:
        try:
            peer.handshake(self.socket_type)
            with self.peers_lock:
                self.peers.append(peer)
            message: list[bytes] = []
            while True:
                flags, body = peer.read_frame()
                if flags & _COMMAND:
                    self._command(peer, body)
                    continue
                message.append(body)
                if not flags & _MORE:
                    self.on_message(peer, message)
                    message = []
        except (OSError, ConnectionError, ProtocolError, IndexError):
            pass
        finally:
            peer.alive = False
            with self.peers_lock:
                if peer in self.peers:
                    self.peers.remove(peer)
            try:
                peer.conn.close()
            except OSError:
                pass

    def _command(self, peer: _Peer, body: bytes) -> None:
        name = body[1 : 1 + body[0]]
        data = body[1 + body[0] :]
        if name == b"SUBSCRIBE":
            peer.subscriptions.append(data)
        elif name == b"CANCEL" and data in peer.subscriptions:
            peer.subscriptions.remove(data)
        elif name == b"PING":
            peer.send(_command(b"PONG", data[2:]))

    def on_message(self, peer: _Peer, frames: list[bytes]) -> None:
        raise NotImplementedError


class PubSocket(_Server):
    """ZMQ PUB: ``send_multipart`` goes to every peer subscribed to a prefix of
    the first frame."""

    socket_type = b"PUB"

    def on_message(self, peer: _Peer, frames: list[bytes]) -> None:
        # ZMTP 3.0 subscriptions: \x01 + prefix subscribes, \x00 + prefix cancels.
        for frame in frames:
            if frame[:1] == b"\x01":
                peer.subscriptions.append(frame[1:])
            elif frame[:1] == b"\x00" and frame[1:] in peer.subscriptions:
                peer.subscriptions.remove(frame[1:])

    def send_multipart(self, frames: list[bytes]) -> None:
        data = b"".join(_frame(f, more=i < len(frames) - 1) for i, f in enumerate(frames))
        with self.peers_lock:
            peers = list(self.peers)
        for peer in peers:
            if any(frames[0].startswith(s) for s in peer.subscriptions):
                try:
                    peer.send(data)
                except OSError:
                    peer.alive = False


class RepSocket(_Server):
    """ZMQ REP: ``handler(body) -> reply`` for each request, envelope preserved."""

    socket_type = b"REP"

    def __init__(self, host: str, port: int, handler: Callable[[bytes], bytes]) -> None:
        self.handler = handler
        super().__init__(host, port)

    def on_message(self, peer: _Peer, frames: list[bytes]) -> None:
        try:
            split = frames.index(b"") + 1
        except ValueError:
            split = 0
        envelope, body = frames[:split], frames[split:]
        reply = self.handler(b"".join(body))
        out = [*envelope, reply]
        peer.send(b"".join(_frame(f, more=i < len(out) - 1) for i, f in enumerate(out)))
