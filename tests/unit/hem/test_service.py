"""The HEM loop against an in-process bus (XPUB + REP on inproc sockets of its context)."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import zmq
import zmq.asyncio
from lxml import etree

from oned.hem.client import OnedClient, OnedError
from oned.hem.hooks import Hook
from oned.hem.service import HookExecutionManager, Settings

_ids = itertools.count()


class FakeClient(OnedClient):
    def __init__(self, hooks: list[Hook]) -> None:
        super().__init__("http://unused")
        self.hooks = hooks
        self.calls = 0
        self.fail = 0

    async def hookpool_info(self) -> list[Hook]:
        self.calls += 1
        if self.fail > 0:
            self.fail -= 1
            raise OnedError("not yet")
        return list(self.hooks)


class Bus:
    """The hook driver's side: XPUB (sees subscriptions) and REP (answers ACK)."""

    def __init__(self, ctx: zmq.asyncio.Context, bind_rep: bool = True, tcp: bool = False) -> None:
        n = next(_ids)
        self.pub_ep, self.rep_ep = f"inproc://pub-{n}", f"inproc://rep-{n}"
        self.pub = ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        if tcp:  # inproc peers are not reconnected
            port = self.pub.bind_to_random_port("tcp://127.0.0.1")
            self.pub_ep = f"tcp://127.0.0.1:{port}"
        else:
            self.pub.bind(self.pub_ep)
        self.rep = ctx.socket(zmq.REP)
        if bind_rep:
            self.rep.bind(self.rep_ep)
        self.subscribed: set[bytes] = set()

    async def wait_subscribed(self, prefix: str, timeout: float = 5) -> None:
        async def loop() -> None:
            while prefix.encode() not in self.subscribed:
                msg = await self.pub.recv()
                if msg[:1] == b"\x01":
                    self.subscribed.add(msg[1:])
                else:
                    self.subscribed.discard(msg[1:])

        await asyncio.wait_for(loop(), timeout)

    async def publish(self, key: str, document: str) -> None:
        await self.pub.send_multipart([key.encode(), base64.b64encode(document.encode())])

    async def result(self, timeout: float = 10) -> tuple[int, int, etree._Element]:
        msg = await asyncio.wait_for(self.rep.recv_string(), timeout)
        await self.rep.send_string("ACK")
        rc, hook_id, body = msg.split(" ", 2)
        doc = etree.fromstring(b"<R>" + base64.b64decode(body) + b"</R>")
        return int(rc), int(hook_id), doc

    async def no_result(self, wait: float) -> None:
        assert not await self.rep.poll(int(wait * 1000)), "unexpected result"


def state_event(vm_id: int, extra: str = "") -> str:
    return (
        "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>VM</HOOK_OBJECT>"
        f"<STATE>ACTIVE</STATE><LCM_STATE>RUNNING</LCM_STATE><RESOURCE_ID>{vm_id}</RESOURCE_ID>"
        f"<REMOTE_HOST>node1</REMOTE_HOST><VM><ID>{vm_id}</ID><NAME>vm{extra}</NAME></VM>"
        "</HOOK_MESSAGE>"
    )


def state_hook(hook_id: int, command: str, **extra: str) -> Hook:
    template = {"RESOURCE": "VM", "STATE": "ACTIVE", "LCM_STATE": "RUNNING", "COMMAND": command}
    template.update(extra)
    return Hook(hook_id, f"h{hook_id}", "state", template)


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


Scenario = Callable[[HookExecutionManager, Bus, FakeClient], Awaitable[None]]


@asynccontextmanager
async def running(
    hooks: list[Hook], bind_rep: bool = True, tcp: bool = False, **settings: object
) -> AsyncIterator[tuple[HookExecutionManager, Bus, FakeClient]]:
    ctx = zmq.asyncio.Context()
    bus = Bus(ctx, bind_rep, tcp)
    client = FakeClient(hooks)
    conf = Settings(
        subscriber_endpoint=bus.pub_ep,
        replier_endpoint=bus.rep_ep,
        stop_timeout=0.5,
        kill_grace=0.2,
        load_retry=0.01,
    )
    for key, value in settings.items():
        setattr(conf, key, value)
    hem = HookExecutionManager(conf, client, ctx)
    task = asyncio.ensure_future(hem.run())
    try:
        await bus.wait_subscribed("RETRY")
        for hook in hooks:
            await bus.wait_subscribed(hook.filter)
        yield hem, bus, client
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        bus.pub.close(0)
        bus.rep.close(0)
        ctx.term()


def test_state_hook_runs_and_its_result_is_acknowledged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = script(tmp_path, "write", f'echo "$@" > {out}')

    async def main() -> None:
        async with running([state_hook(5, cmd, ARGUMENTS="$TEMPLATE running")]) as (hem, bus, c):
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/7 ", state_event(7))
            rc, hook_id, doc = await bus.result()
            assert (rc, hook_id) == (0, 5)
            args = doc.findtext("ARGUMENTS") or ""
            vm_b64, word = args.split(" ")
            assert word == "running"
            assert b"<ID>7</ID>" in base64.b64decode(vm_b64)
            assert out.read_text() == args + "\n"
            assert doc.findtext("EXECUTION_RESULT/CODE") == "0"
            assert doc.find("REMOTE_HOST") is None  # not a remote hook
            # an event nobody subscribed to is never delivered
            await bus.publish("EVENT STATE VM/ACTIVE/PROLOG/7 ", state_event(7))
            await bus.no_result(0.3)
            assert hem.sender.acked == 1

    asyncio.run(main())


def test_load_is_retried_until_oned_answers(tmp_path: Path) -> None:
    async def main() -> None:
        ctx = zmq.asyncio.Context()
        client = FakeClient([])
        client.fail = 3
        hem = HookExecutionManager(Settings(load_retry=0.01), client, ctx)
        assert await hem.load_hooks()
        assert client.calls == 4
        client.fail = 1
        assert not await hem.load_hooks(retry=False)
        ctx.term()

    asyncio.run(main())


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    seen = tmp_path / "seen"
    cmd = script(
        tmp_path, "slow",
        f"touch {runs}/$$; ls {runs} | wc -l >> {seen}; sleep 0.3; rm {runs}/$$",
    )
    hooks = [state_hook(1, cmd), state_hook(2, cmd), state_hook(3, cmd)]

    async def main() -> None:
        async with running(hooks, concurrency=2, per_hook=2) as (hem, bus, c):
            for vm in range(3):
                await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1, str(vm)))
            results = [await bus.result() for _ in range(9)]
            assert sorted(r[1] for r in results) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
            assert all(r[0] == 0 for r in results)

    asyncio.run(main())
    counts = [int(x) for x in seen.read_text().split()]
    assert len(counts) == 9 and max(counts) <= 2


def test_a_hanging_hook_does_not_block_the_others(tmp_path: Path) -> None:
    hang = script(tmp_path, "hang", "sleep 30")
    fast = script(tmp_path, "fast", "echo done")
    hooks = [state_hook(1, hang), Hook(2, "api", "api", {"CALL": "one.vm.allocate",
                                                        "COMMAND": fast})]
    api = (
        "<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE><CALL>one.vm.allocate</CALL>"
        "<CALL_INFO><RESULT>1</RESULT><PARAMETERS/><EXTRA/></CALL_INFO></HOOK_MESSAGE>"
    )

    async def main() -> None:
        async with running(hooks, concurrency=4) as (hem, bus, c):
            for vm in range(6):
                await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1, str(vm)))
            await asyncio.sleep(0.2)
            await bus.publish("EVENT API one.vm.allocate 1", api)
            rc, hook_id, doc = await bus.result(timeout=5)
            assert (rc, hook_id) == (0, 2)
            assert base64.b64decode(doc.findtext("EXECUTION_RESULT/STDOUT") or "") == b"done\n"

    asyncio.run(main())


def test_timeout_and_failures_are_reported(tmp_path: Path) -> None:
    hang = script(tmp_path, "hang", "sleep 30")
    bad = script(tmp_path, "bad", "echo broken >&2; exit 4")
    hooks = [
        state_hook(1, hang, TIMEOUT="1"),
        state_hook(2, bad),
        state_hook(3, str(tmp_path / "missing")),
        state_hook(4, "relative-missing"),
        state_hook(5, "/bin/true", REMOTE="YES"),
    ]
    no_host = state_event(9).replace("<REMOTE_HOST>node1</REMOTE_HOST>", "")

    async def main() -> None:
        async with running(hooks, hook_base_path=str(tmp_path / "hooks")) as (hem, bus, c):
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/9 ", no_host)
            results = {r[1]: r for r in [await bus.result() for _ in range(5)]}
            assert {k: v[0] for k, v in results.items()} == {1: 255, 2: 4, 3: 255, 4: 255, 5: 255}

            def stderr(hook_id: int) -> str:
                text = results[hook_id][2].findtext("EXECUTION_RESULT/STDERR") or ""
                return base64.b64decode(text).decode()

            assert stderr(1) == f"Timeout executing {hang}"
            assert stderr(2) == "broken\n"
            assert stderr(3).startswith("Internal error No such file or directory")
            assert f"{tmp_path}/hooks/relative-missing" in stderr(4)
            assert stderr(5) == "No remote host specified for a remote hook."

    asyncio.run(main())


def test_hooks_are_reloaded_after_hook_allocate(tmp_path: Path) -> None:
    async def main() -> None:
        async with running([]) as (hem, bus, client):
            client.hooks = [state_hook(8, "/bin/true")]
            await bus.publish(
                "EVENT API one.hook.allocate 1",
                "<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE><CALL>one.hook.allocate</CALL>"
                "<CALL_INFO><RESULT>1</RESULT></CALL_INFO></HOOK_MESSAGE>",
            )
            await bus.wait_subscribed("EVENT STATE VM/ACTIVE/RUNNING")
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/3 ", state_event(3))
            assert (await bus.result())[:2] == (0, 8)

    asyncio.run(main())


def test_retry_reruns_with_the_recorded_arguments(tmp_path: Path) -> None:
    cmd = script(tmp_path, "echo", 'echo "$@"')
    retry = (
        "<HOOK_MESSAGE><ARGUMENTS>" + base64.b64encode(b"x y").decode() + "</ARGUMENTS>"
        "<HOOK_ID>4</HOOK_ID><REMOTE_HOST>node2</REMOTE_HOST></HOOK_MESSAGE>"
    )

    async def main() -> None:
        async with running([state_hook(4, cmd)]) as (hem, bus, c):
            await bus.pub.send_multipart(
                [b"RETRY", base64.b64encode(retry.encode()) + b" "]
            )
            rc, hook_id, doc = await bus.result()
            assert (rc, hook_id) == (0, 4)
            assert doc.findtext("ARGUMENTS") == "x y"
            assert doc.findtext("RETRY") == "yes"
            assert doc.findtext("REMOTE_HOST") == "node2"
            stdout = base64.b64decode(doc.findtext("EXECUTION_RESULT/STDOUT") or "")
            assert stdout == b"x y\n"

    asyncio.run(main())


def test_a_resent_event_is_not_run_twice_at_once(tmp_path: Path) -> None:
    count = tmp_path / "count"
    cmd = script(tmp_path, "slow", f"echo run >> {count}; sleep 0.5")

    async def main() -> None:
        async with running([state_hook(1, cmd)]) as (hem, bus, c):
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1))
            await asyncio.sleep(0.1)
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1))
            assert (await bus.result())[:2] == (0, 1)
            await bus.no_result(0.5)
            # once answered, the same document runs again (oned sent it again)
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1))
            assert (await bus.result())[:2] == (0, 1)

    asyncio.run(main())
    assert count.read_text() == "run\nrun\n"


def test_a_result_waits_for_the_driver_and_is_sent_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with running([state_hook(1, "/bin/true")], bind_rep=False) as (hem, bus, c):
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1))
            for _ in range(100):
                if hem.sender.pending == 0 and hem.executed == 1:
                    break
                await asyncio.sleep(0.02)
            # oned sends the event again while the result waits: it does not run again
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1))
            await asyncio.sleep(0.3)
            assert hem.executed == 1
            bus.rep.bind(bus.rep_ep)  # the driver (re)starts
            assert (await bus.result())[:2] == (0, 1)
            await bus.no_result(0.3)

    asyncio.run(main())


def test_pending_executions_are_bounded_and_none_is_lost(tmp_path: Path) -> None:
    async def main() -> None:
        async with running([state_hook(1, "/bin/true")], max_pending=5, concurrency=4) as (
            hem, bus, c,
        ):
            most = 0
            track = hem._track

            def recording(task):  # type: ignore[no-untyped-def]
                nonlocal most
                track(task)
                most = max(most, hem.running)

            hem._track = recording  # type: ignore[method-assign]
            for vm in range(60):
                await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/1 ", state_event(1, str(vm)))
            results = [await bus.result() for _ in range(60)]
            assert [r[:2] for r in results] == [(0, 1)] * 60
            assert most <= 5

    asyncio.run(main())


def test_garbage_on_the_bus_is_survived(tmp_path: Path) -> None:
    async def main() -> None:
        hook = state_hook(1, "/bin/echo", ARGUMENTS="$TEMPLATE")
        async with running([hook]) as (hem, bus, c):
            await bus.pub.send_multipart([b"EVENT STATE VM/ACTIVE/RUNNING/1 ", b"!!not b64 <"])
            rc, hook_id, doc = await bus.result()
            assert (rc, hook_id, doc.findtext("ARGUMENTS")) == (0, 1, "")
            await bus.pub.send_multipart([b"RETRY", b"????"])
            await bus.pub.send_multipart([b"RETRY"])
            await bus.pub.send_multipart([b"EVENT STATE"])
            retry_missing = base64.b64encode(b"<HOOK_MESSAGE><HOOK_ID>77</HOOK_ID></HOOK_MESSAGE>")
            await bus.pub.send_multipart([b"RETRY", retry_missing])
            await bus.no_result(0.3)
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/2 ", state_event(2))
            rc, hook_id, doc = await bus.result()
            assert (rc, hook_id) == (0, 1) and doc.findtext("ARGUMENTS")

    asyncio.run(main())


def test_hooks_are_read_again_when_the_bus_comes_back(tmp_path: Path) -> None:
    async def main() -> None:
        async with running([state_hook(1, "/bin/true")], tcp=True) as (hem, bus, client):
            await asyncio.sleep(0.2)
            before = client.calls
            bus.pub.close(0)  # the hook driver restarts
            await asyncio.sleep(0.2)
            bus.pub = hem.ctx.socket(zmq.XPUB)
            bus.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
            bus.pub.bind(bus.pub_ep)  # same port
            bus.subscribed.clear()
            await bus.wait_subscribed("EVENT STATE VM/ACTIVE/RUNNING")
            for _ in range(100):
                if client.calls > before:
                    break
                await asyncio.sleep(0.02)
            assert client.calls == before + 1
            await bus.publish("EVENT STATE VM/ACTIVE/RUNNING/3 ", state_event(3))
            assert (await bus.result())[:2] == (0, 1)

    asyncio.run(main())


def test_request_reload_reads_the_pool(tmp_path: Path) -> None:
    async def main() -> None:
        async with running([]) as (hem, bus, client):
            before = client.calls
            client.hooks = [state_hook(2, "/bin/true")]
            hem.request_reload()
            await bus.wait_subscribed("EVENT STATE VM/ACTIVE/RUNNING")
            assert client.calls == before + 1 and 2 in hem.hooks

    asyncio.run(main())
