"""The Hook Execution Manager loop (onehem-server's ``HookExecutionManager``).

Events are read from the bus as fast as they come and each matching hook becomes a task;
tasks wait for a slot of their hook (``per_hook`` at once, so one hanging hook cannot take
every slot) and then for a global slot (``concurrency``). At most ``max_pending``
executions wait at a time; past that the HEM stops reading the bus until some finish (the
driver's socket then buffers, and oned keeps every event until its result arrives).

Hooks are loaded with ``one.hookpool.info`` at start (retried until oned answers), again
after every ``one.hook.allocate/update/delete`` event, and every ``reload_interval``
seconds so that a change made while the HEM was down or disconnected is seen too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass

import zmq
import zmq.asyncio
from lxml import etree

from oned.hem.bus import ResultSender, Subscriber
from oned.hem.client import OnedClient, OnedError
from oned.hem.execute import CommandResult, command_line, response_body, run_command
from oned.hem.hooks import (
    UPDATE_CALLS,
    Event,
    Hook,
    HookMap,
    first_text,
    lenient_b64decode,
    parse_event,
    parse_xml,
)

log = logging.getLogger("oned.hem")


@dataclass
class Settings:
    """onehem-server.conf's settings plus ours (defaults as onehem-server's)."""

    hook_base_path: str = "/var/lib/one/remotes/hooks"
    remote_hook_base_path: str = "/var/tmp/one/hooks"  # noqa: S108 (remote, as oned)
    subscriber_endpoint: str = "tcp://127.0.0.1:2101"
    replier_endpoint: str = "tcp://127.0.0.1:2102"
    concurrency: int = 10
    per_hook: int = 0  # 0: half of concurrency (at least 1)
    max_output: int = 64 * 1024
    max_pending: int = 20_000
    reload_interval: float = 60.0
    load_retry: float = 0.5
    ack_timeout: float = 30.0
    kill_grace: float = 5.0
    stop_timeout: float = 10.0
    ssh: str = "ssh"

    @property
    def hook_slots(self) -> int:
        return self.per_hook if self.per_hook > 0 else max(1, self.concurrency // 2)


def event_document(content: bytes) -> etree._Element:
    """The HOOK_MESSAGE of a bus message's base64 content (its first word); what cannot be
    read is an empty message, with which the hook runs without arguments (as Nokogiri's
    empty document makes onehem-server run it)."""
    words = content.split()
    doc = parse_xml(lenient_b64decode(words[0])) if words else None
    return doc if doc is not None else etree.Element("HOOK_MESSAGE")


class HookExecutionManager:
    def __init__(
        self, settings: Settings, client: OnedClient, ctx: zmq.asyncio.Context | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self.ctx = ctx or zmq.asyncio.Context()
        self.hooks = HookMap()
        self.subscriber: Subscriber | None = None
        self.sender = ResultSender(self.ctx, settings.replier_endpoint, settings.ack_timeout)
        self.executed = 0
        self.loaded = asyncio.Event()
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))
        self._hook_slots: dict[int, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[tuple[int, bool, bytes]] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._reload_lock = asyncio.Lock()
        self._stopping = False

    # ---------------------------------------------------------------- hooks
    async def load_hooks(self, retry: bool = True) -> bool:
        """Read the hook pool and subscribe to what it needs; with ``retry`` keep asking
        until oned answers (it may still be starting, or not have written its
        credential yet)."""
        async with self._reload_lock:
            attempt = 0
            while True:
                try:
                    hooks = await self.client.hookpool_info()
                    break
                except OnedError as exc:
                    if not retry or self._stopping:
                        log.error("Cannot get hook information: %s", exc)
                        return False
                    if attempt % 20 == 0:
                        log.warning("Cannot get hook information (%s), retrying", exc)
                    attempt += 1
                    await asyncio.sleep(self.settings.load_retry)
            for hook in hooks:
                if not hook.valid:
                    log.error("Error loading hooks. Invalid type: %s", hook.type)
            self.hooks.replace_all(hooks)
            if self.subscriber is not None:
                self.subscriber.apply(self.hooks.subscriptions())
            log.info("Hooks successfully loaded (%d)", len(self.hooks))
            self.loaded.set()
            return True

    def request_reload(self) -> None:
        """Read the hooks again soon (SIGHUP, ``systemctl reload oned-hem``)."""
        self._track(asyncio.ensure_future(self._reload()))

    async def _reload(self) -> None:
        await self.load_hooks(retry=False)

    async def _reload_on_reconnect(self) -> None:
        """The bus came back (oned or its hook driver restarted): read the hooks again.
        Besides catching up on hook changes, the ``one.hookpool.info`` makes oned send
        the events still waiting for a result, some of which we may have missed."""
        assert self.subscriber is not None
        first = True
        async for _ in self.subscriber.connections():
            if not first:
                log.info("Reconnected to %s", self.settings.subscriber_endpoint)
                self._track(asyncio.ensure_future(self._reload()))
            first = False

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            try:
                await self.load_hooks(retry=False)
            except Exception:  # a bad pool document must not end the periodic reload
                log.exception("Reloading hooks failed")

    # ---------------------------------------------------------------- events
    async def run(self) -> None:
        """Connect, load the hooks and serve events until cancelled."""
        self.subscriber = Subscriber(self.ctx, self.settings.subscriber_endpoint)
        self.subscriber.apply(self.hooks.subscriptions())
        sender = asyncio.ensure_future(self.sender.run())
        try:
            await self.load_hooks()
            reload = asyncio.gather(self._reload_forever(), self._reload_on_reconnect())
            try:
                while not self._stopping:
                    await self._room.wait()
                    key, content = await self.subscriber.receive()
                    self.handle(key, content)
            finally:
                reload.cancel()
                await asyncio.gather(reload, return_exceptions=True)
        finally:
            await self._drain()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self.sender.close()
            self.subscriber.close()

    def handle(self, key: bytes, content: bytes) -> None:
        """One bus message: start the executions it asks for."""
        log.debug("New event received\nkey: %r\ncontent: %r", key, content[:256])
        event = parse_event(key, content)
        if event is None:
            return
        if event.action == "RETRY":
            self._spawn_retry(event)
            return
        for hook in self.hooks.hooks_for(event.type, event.key):
            self._spawn(hook, event.content, is_retry=False)
        if event.type == "API" and event.key in UPDATE_CALLS:
            self._track(asyncio.ensure_future(self._reload()))

    def _spawn(self, hook: Hook, content: bytes, is_retry: bool) -> None:
        """An execution of ``hook`` for the base64 ``content``; the document is parsed once
        the execution has its slots, so thousands of waiting events cost their bytes only."""
        # The same document for the same hook while an execution of it is running or its
        # result is on its way (oned re-sent an event whose result has not arrived yet)
        # is not run a second time.
        ident = (hook.id, is_retry, hashlib.sha256(content).digest())
        if ident in self._inflight:
            log.info("Hook %d already running for this event, not run again", hook.id)
            return
        self._inflight.add(ident)
        task = asyncio.ensure_future(self._execute(hook, content, is_retry, ident))
        self._track(task)

    def _spawn_retry(self, event: Event) -> None:
        words = event.content.split()
        doc = parse_xml(lenient_b64decode(words[0])) if words else None
        hook_id = first_text(doc, "HOOK_ID") if doc is not None else None
        if doc is None or hook_id is None or not hook_id.strip().lstrip("-").isdigit():
            log.error("Unreadable RETRY message")
            return
        self._track(asyncio.ensure_future(self._retry(int(hook_id), event.content)))

    async def _retry(self, hook_id: int, content: bytes) -> None:
        hook = self.hooks.get(hook_id)
        if hook is None:  # made after our last load: read the pool again
            await self.load_hooks(retry=False)
            hook = self.hooks.get(hook_id)
        if hook is None:
            log.error("RETRY of hook %d, which does not exist", hook_id)
            return
        self._spawn(hook, content, is_retry=True)

    def _track(self, task: asyncio.Future[None] | asyncio.Task[None]) -> None:
        assert isinstance(task, asyncio.Task)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if len(self._tasks) >= self.settings.max_pending:
            self._room.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Hook execution failed: %r", task.exception())
        if len(self._tasks) < self.settings.max_pending:
            self._room.set()

    # ---------------------------------------------------------------- execution
    async def _execute(
        self, hook: Hook, content: bytes, is_retry: bool, ident: tuple[int, bool, bytes]
    ) -> None:
        # The event stays "in flight" until its result is acknowledged (or given up).
        submitted = False
        try:
            hook_slots = self._hook_slots.setdefault(
                hook.id, asyncio.Semaphore(self.settings.hook_slots)
            )
            async with hook_slots, self._slots:
                message = await self.execute(hook, event_document(content), is_retry)
            if message is not None:
                self.sender.submit(message, lambda: self._inflight.discard(ident))
                submitted = True
        finally:
            if not submitted:
                self._inflight.discard(ident)

    async def execute(self, hook: Hook, doc: etree._Element, is_retry: bool = False) -> str | None:
        """Run ``hook`` for the event (or RETRY) document; the result message to send."""
        if is_retry:
            params = lenient_b64decode(first_text(doc, "ARGUMENTS") or "").decode(
                "utf-8", "replace"
            )
            host = first_text(doc, "REMOTE_HOST") or ""
            remote_flag = bool(host)
        else:
            params = hook.arguments(doc)
            host = hook.remote_host(doc)
            remote_flag = hook.remote
        log.info("Executing hook %d for %s", hook.id, hook.key)
        result = await self.run_hook(hook, params, host)
        self.executed += 1
        if result.code == 0:
            log.info("Hook %d successfully executed for %s", hook.id, hook.key)
        else:
            log.error("Failure executing hook %d for %s", hook.id, hook.key)
        body = response_body(params, result, host, remote_flag, is_retry)
        return f"{result.code} {hook.id} {body}"

    async def run_hook(self, hook: Hook, params: str, host: str) -> CommandResult:
        s = self.settings
        command = hook.command
        if command is None or not command.strip():
            return CommandResult("", 255, b"", b"Internal error the hook has no COMMAND")
        base = s.remote_hook_base_path if hook.remote else s.hook_base_path
        line = command_line(base, command.strip(), params, hook.as_stdin)
        if hook.remote and not host:
            # onehem-server logs this and answers nothing; a failure record tells the
            # operator why the hook did not run, and oned stops waiting for it.
            log.error("No remote host specified for a remote hook.")
            return CommandResult(line, 255, b"", b"No remote host specified for a remote hook.")
        return await run_command(
            line,
            stdin=params if hook.as_stdin else None,
            timeout=hook.timeout,
            max_output=s.max_output,
            ssh_host=host if hook.remote else None,
            ssh=s.ssh,
            kill_grace=s.kill_grace,
        )

    # ---------------------------------------------------------------- stop
    def stop(self) -> None:
        self._stopping = True

    async def _drain(self) -> None:
        """Give running hooks ``stop_timeout`` seconds and deliver their results; what is
        still running then is terminated (oned sends those events again)."""
        tasks = set(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.settings.stop_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await self.sender.flush(self.settings.stop_timeout)

    @property
    def running(self) -> int:
        return len(self._tasks)
