"""One claimed video's way from GitHub to the bucket: stream through verification into the
store while the lease is renewed, then mark ready — or release, defer or fail it. The claim
itself was made with the pass's other decisions (one batch); the closing writes (ready,
release, fail) go through the pass's `Writes` too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Protocol

from ..errors import (
    ArtifactError,
    ArtifactMissing,
    AuthError,
    ConfigError,
    ContentMismatch,
    LeaseLost,
    VideopollError,
)
from ..model import Action, ArtifactRef, Status, VideoAsset, size
from ..ports import ArtifactSource, Objects, Rows
from ..states import Change, Event
from .bookkeeping import Pass
from .config import EngineConfig
from .verify import check_size, verified


class TransferStore(Rows, Objects, Protocol):
    """What a transfer uses of the store: the row's lease and the bucket."""


def object_key(row: VideoAsset) -> str:
    """The deterministic key: a repeated transfer overwrites, never duplicates."""
    return f"videos/{row.lesson_id}/{row.id}.mp4"


class Transfers:
    def __init__(self, store: TransferStore, artifacts: ArtifactSource, config: EngineConfig,
                 owner: str, progress: Callable[[str, int, int], None] | None) -> None:
        self.store = store
        self.artifacts = artifacts
        self.config = config
        self.owner = owner
        self.progress = progress
        # GitHub downloads in flight at once (GitHub asks for few concurrent requests).
        self.gate = asyncio.Semaphore(config.concurrency)

    async def run(self, run: Pass, row: VideoAsset, ref: ArtifactRef) -> None:
        """Move `row`, which this poller claimed in this pass, from `ref` into the bucket."""
        key = object_key(row)
        try:
            check_size(ref, self.config.max_bytes)
        except ArtifactError as exc:
            await self._settle(run, run.fail(row, exc.message, self.owner), row)
            return
        if run.dry_run:
            run.note(row, row.status, Action.STORED, f"would store {key} ({size(ref.size)})")
            return
        row = replace(row, status=Status.TRANSFERRING)  # ours now: what every note says
        try:
            await self._copy_under_lease(row, ref, key)
            stored = await run.writes.one(
                Change(row.id, Event.READY, owner=self.owner, value=key))
        except (ConfigError, AuthError):
            await self._release(run, row)
            raise
        except (ContentMismatch, ArtifactMissing) as exc:
            # Bytes that never match, or a listed file that cannot be had: counted, and
            # after VIDEOPOLL_MAX_ATTEMPTS the video fails instead of waiting forever.
            count = await run.defer(row, exc, mismatch=True)
            if count >= self.config.max_attempts:
                await self._settle(run, run.fail(row, f"{exc.message} ({count} attempts)",
                                                 self.owner), row)
            else:
                await self._release(run, row)
        except ArtifactError as exc:
            if exc.transient:
                await run.defer(row, exc)
                await self._release(run, row)
            else:
                await self._settle(run, run.fail(row, exc.message, self.owner), row)
        except LeaseLost as exc:
            run.note(row, Status.TRANSFERRING, Action.SKIPPED, exc.message)
        except VideopollError as exc:  # the store or GitHub failed: try again next pass
            await run.defer(row, exc)
            await self._release(run, row)
        else:
            if stored:
                run.note(row, Status.READY, Action.STORED, f"stored {key} ({size(ref.size)})")
            else:
                run.note(row, Status.TRANSFERRING, Action.SKIPPED, LeaseLost().message)

    async def release(self, run: Pass, row: VideoAsset) -> None:
        """Hand back a claim this pass made but will not use (no file yet, say)."""
        await self._release(run, row)

    async def fail(self, run: Pass, row: VideoAsset, reason: str) -> None:
        """Fail a row this pass claimed (the claim goes back if that cannot be written)."""
        await self._settle(run, run.fail(row, reason, self.owner), row)

    async def _settle(self, run: Pass, failing: Awaitable[None], row: VideoAsset) -> None:
        """Fail a row we hold; if the store cannot be told, hand the claim back rather than
        leave the row held until the lease runs out."""
        try:
            await failing
        except (ConfigError, AuthError):
            raise
        except VideopollError:
            await self._release(run, row)
            raise

    async def _release(self, run: Pass, row: VideoAsset) -> None:
        """Hand the claim back; the row's item then says `finished`, as the row does."""
        if run.dry_run:
            return
        try:
            if await run.writes.one(Change(row.id, Event.RELEASE, owner=self.owner)):
                run.restate(row, Status.FINISHED)
        except (ConfigError, AuthError):
            raise
        except VideopollError:
            pass  # the lease runs out on its own; the row is claimable again then

    async def _copy_under_lease(self, row: VideoAsset, ref: ArtifactRef, key: str) -> None:
        """Stream into the store while a side task renews the lease; losing it stops both."""

        def tick(done: int) -> None:
            if self.progress is not None:
                self.progress(row.id, done, ref.size)

        done = 0

        def count(n: int) -> None:
            nonlocal done
            done += n
            tick(done)

        raw = self.artifacts.open(ref)
        source = self._gated(raw)
        chunks = verified(source, ref, progress=count)
        copy = asyncio.ensure_future(self.store.put(
            row, key, chunks, size=ref.size, digest=ref.lfs_oid or ref.sha, owner=self.owner))
        renew = asyncio.ensure_future(self._renew(row))
        try:
            await asyncio.wait({copy, renew}, return_when=asyncio.FIRST_COMPLETED)
            if not copy.done():  # renewal ended first: the lease is lost (or the store failed)
                copy.cancel()
                await asyncio.gather(copy, return_exceptions=True)
                renew.result()
            await copy
        finally:
            for task in (copy, renew):
                task.cancel()
            await asyncio.gather(copy, renew, return_exceptions=True)
            # Close the streams now rather than at garbage collection: that frees the
            # download slot and the HTTP connection at once.
            for stream in (chunks, source, raw):
                if isinstance(stream, AsyncGenerator):
                    await stream.aclose()

    async def _gated(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Hold a download slot only while GitHub's bytes flow; the claim before and the
        upload and row write after do not wait for one."""
        async with self.gate:
            async for piece in source:
                yield piece

    async def _renew(self, row: VideoAsset) -> None:
        while True:
            await asyncio.sleep(self.config.lease / 3)
            if not await self.store.renew(row.id, self.owner, self.config.lease):
                raise LeaseLost()
