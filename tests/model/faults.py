"""Fault injection around any port object: a transient fault or a kill at any awaited call.

`Process` is one videopoll process (a `poll` or a `generate`) as the world sees it: the
ports it holds are `Faulty` proxies around the shared fakes, and its `plan` says which of its
calls go wrong and how. A fault is keyed by (method, n): the n-th call of that method this
process makes, or with method `*` its n-th port call, whatever it is. It fires before the
call's effect (the request never arrived), after it (the effect took place, the answer was
lost: how a lost response looks to the caller) or, for the two streams, in the middle (a
download or an upload broke off after its first piece).

Kinds of fault, as the adapters report them (DESIGN 6.1, 8): `server_error` (5xx after the
client's retries), `unreachable` (DNS, refused, timeout), `rate_limited` (429: always before
the effect), `hang` (the request hangs: the shared clock moves on, then it times out) and
`kill`.

The kill model. A killed process runs no code at all, so no clean-up reaches a service.
`Killed` is a BaseException, so none of the engine's handlers (`except ServiceError`,
`except Exception`) can answer it with a store write; and from that moment the process's
ports are dead: every later call through them raises `Killed` again before any effect. The
`finally` blocks of the engine do run as the exception unwinds (cancelling the pass's own
tasks, closing its streams) but whatever they try to do to the world is refused, which is
exactly what a SIGKILL leaves behind. The alternative, dropping the task without cancelling
it, leaves suspended coroutines that the garbage collector closes later, running the same
`finally` blocks at a random moment in a later step. (One difference remains: the local
store deletes its own half-written temp file as the exception passes through its `put`,
which a SIGKILL would not; the next writer sweeps such files anyway, and tests/chaos kills
real processes.) Killing at a port call covers killing at any await point: between two
port calls a process changes nothing the world can see, so dying at an await in between
leaves the same world as dying just before the next port call.

What a process left running when its command ended (tasks of a pass that raised) is
cancelled then, as `asyncio.run` cancels it when a real `poll` exits.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from videopoll.errors import RateLimited, ServerError, ShortBody, Unreachable
from videopoll.model import ArtifactRef, VideoAsset
from videopoll.testing import FakeClock

Kind = Literal["server_error", "unreachable", "rate_limited", "hang", "kill"]
When = Literal["before", "after", "mid"]
KINDS: tuple[Kind, ...] = ("server_error", "unreachable", "rate_limited", "hang", "kill")
WHENS: tuple[When, ...] = ("before", "after", "mid")
INJECTED = "injected"  # every injected error's message starts with this word


class Killed(BaseException):
    """The process was killed (SIGKILL) at this call; see the module docstring."""


@dataclass(frozen=True)
class Fault:
    """The `nth` call (0: the first) of `method` (`*`: of any method) by one process goes
    wrong."""

    method: str
    nth: int
    kind: Kind
    when: When

    def __str__(self) -> str:
        return f"{self.kind} {self.when} {self.method}#{self.nth}"


@dataclass(frozen=True)
class Fired:
    """A fault that fired: on which row (store calls name one), and whether the call's
    effect had taken place."""

    fault: Fault
    method: str  # the method called (the fault's, or any for `*`)
    asset_id: str | None
    effect: bool
    raised: BaseException
    batch: tuple[str, ...] = ()  # `apply`: every row the batch's changes are about


def asset_of(args: tuple[Any, ...]) -> str | None:
    """The row a store call is about (its first argument), if any."""
    if args and isinstance(args[0], str):
        return args[0]
    if args and isinstance(args[0], VideoAsset):
        return args[0].id
    return None


@dataclass
class Process:
    """One process: its fault plan, its calls so far, whether it is dead.

    `jitter` adds 0-2 scheduling points around every call, so concurrent processes
    interleave differently from one example to the next (and reproducibly for one seed).
    `on_download(ref, data)` hears every download read to its end (the world counts spoiled
    ones). `results` logs each call that returned, with its arguments and its answer.
    """

    name: str
    clock: FakeClock
    plan: tuple[Fault, ...] = ()
    hang_s: float = 301.0
    seed: int = 0
    on_download: Callable[[ArtifactRef, bytes], None] | None = None
    dead: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    fired: list[Fired] = field(default_factory=list)
    results: list[tuple[str, tuple[Any, ...], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.jitter = random.Random(self.seed)

    async def pause(self) -> None:
        for _ in range(self.jitter.randint(0, 2)):
            await asyncio.sleep(0)

    def alive(self, method: str) -> None:
        if self.dead:
            raise Killed(f"{self.name} is dead: {method} never sent")

    def next_fault(self, method: str) -> Fault | None:
        nth, overall = self.calls[method], self.calls.total()
        self.calls[method] += 1
        return next((f for f in self.plan if (f.method, f.nth) in ((method, nth),
                                                                   ("*", overall))), None)

    def fire(self, fault: Fault, method: str, asset_id: str | None, *, effect: bool,
             stream: bool = False, batch: tuple[str, ...] = ()) -> BaseException:
        """The exception this fault raises (the caller raises it)."""
        exc = self._exception(fault, method, stream)
        self.fired.append(Fired(fault, method, asset_id, effect, exc, batch))
        return exc

    def _exception(self, fault: Fault, method: str, stream: bool) -> BaseException:
        where = f"{method} ({fault.when})"
        if fault.kind == "kill":
            self.dead = True
            return Killed(f"{self.name} killed at {where}")
        if fault.kind == "hang":
            self.clock.advance(self.hang_s)
        if stream and fault.when != "before":  # a body broke off: the adapters' ShortBody
            return ShortBody(f"{INJECTED}: download broke off at {where}")
        if fault.kind == "server_error":
            return ServerError(f"{INJECTED}: HTTP 502 at {where}", status=502)
        if fault.kind == "rate_limited":
            return RateLimited(f"{INJECTED}: HTTP 429 at {where}", retry_after=60, status=429)
        what = "timed out (hung)" if fault.kind == "hang" else "unreachable"
        return Unreachable(f"{INJECTED}: {what} at {where}")

    async def call(self, method: str, fn: Callable[..., Awaitable[Any]],
                   args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await self.pause()
        self.alive(method)
        fault = self.next_fault(method)
        row = asset_of(args)
        # A batch of row changes (a pass's decisions, or ready marks): a lost answer is about
        # every row in it.
        batch = tuple(c.asset_id for c in args[0]) if method == "apply" and args else ()
        if fault is not None and method == "put" and fault.when == "mid":
            args = (*args[:2], self._upload(args[2], fault, row), *args[3:])
        elif fault is not None and (fault.when != "after" or fault.kind == "rate_limited"):
            raise self.fire(fault, method, row, effect=False)
        result = await fn(*args, **kwargs)
        if fault is not None and fault.when == "after" and fault.kind != "rate_limited":
            raise self.fire(fault, method, row, effect=True, batch=batch)
        self.results.append((method, args, result))
        await self.pause()
        self.alive(method)  # the answer arrived in a process killed meanwhile
        return result

    async def _upload(self, chunks: AsyncIterator[bytes], fault: Fault, row: str | None
                      ) -> AsyncIterator[bytes]:
        """The bytes an upload sends; the fault breaks it off after the first piece."""
        sent = 0
        async for piece in chunks:
            self.alive("put")
            yield piece
            sent += 1
            if sent == 1:
                raise self.fire(fault, "put", row, effect=False)

    async def download(self, open_: Callable[[ArtifactRef], AsyncIterator[bytes]],
                       ref: ArtifactRef) -> AsyncIterator[bytes]:
        """`open(ref)` as this process sees it: the request is sent on first iteration."""
        await self.pause()
        self.alive("open")
        fault = self.next_fault("open")
        if fault is not None and fault.when == "before":
            raise self.fire(fault, "open", None, effect=False, stream=True)
        inner = open_(ref)
        got = bytearray()
        try:
            async for piece in inner:
                self.alive("open")
                got += piece
                yield piece
                if fault is not None:
                    raise self.fire(fault, "open", None, effect=False, stream=True)
        finally:
            if isinstance(inner, AsyncIterator) and hasattr(inner, "aclose"):
                await inner.aclose()
        if self.on_download is not None:
            self.on_download(ref, bytes(got))


class Faulty:
    """A port object seen through a `Process`: every async method call goes through its
    plan; `open` (a stream) through `Process.download`; anything else passes unchanged."""

    def __init__(self, target: object, process: Process) -> None:
        self._target = target
        self._process = process

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name == "open":
            return lambda ref: self._process.download(attr, ref)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._process.call(name, attr, args, kwargs)

        return call
