"""The model-based test of issue 12: videopoll's processes in a world that misbehaves.

`VideopollModel` is a Hypothesis `RuleBasedStateMachine`. Its rules are what happens in a
real deployment, in any order: the app inserts rows; the agent's conversations start, run,
finish (committing the file, now, later or never), go back to work, fail, vanish or become
unreadable; GitHub gains, replaces, loses and spoils files; time jumps past leases and
graces; a user runs `retry`; and `run` starts one to three concurrent processes (`poll`
passes by distinct owners, `generate`s) each with its own fault plan: any port call may
fail (5xx, timeout, 429, a hang that lets the clock run on) before or after its effect, or
the process may be killed there (see `faults.py`). `settle` stops the faults and checks that
everything comes to an end.

What is checked, after every step (`after_step`, and the `@invariant`s):
  * an object is stored under a key only with bytes GitHub listed at that row's path (an
    MP4 within VIDEOPOLL_MAX_BYTES): verified bytes or none;
  * a row is `ready` only with its object stored under its key;
  * rows only move forward: `ready` stays `ready` with the same bytes; `failed` leaves only
    through `retry`;
  * every row that became `failed` has a reason the world backs (the agent failed, stuck past
    VIDEOPOLL_MAX_GENERATION, finished with no file past the grace, too large, not an MP4,
    an unsafe path, a malformed id, damaged downloads VIDEOPOLL_MAX_ATTEMPTS times, a
    conversation or start task OpenHands does not know after its grace): failed by a
    transient fault or by nothing at all is a violation;
  * every pass returns a summary (an exception out of `poll_once` is a violation) whose
    items are exactly the rows `pending()` gave it, with `found >= processed`; over the
    step's concurrent passes each row that became `ready` (`failed`) is counted `stored`
    (`failed`) exactly once, unless a lost answer or a kill hid the outcome from its poller;
    a pass alone reports each row's real status after it; a dry run changes nothing; no
    task of a pass outlives it;
  * nothing doubled: a `generate` starts at most one conversation and leaves none without a
    row; a `generate` without --force never leaves a lesson with two open videos.
And `settle`, the liveness property (a rule, at most every SETTLE_EVERY steps since a settle
ends most of what is under way, and the end of every example): with faults stopped, K passes,
each after a jump past the lease and every grace, leave every row `ready` or `failed` unless
its agent is still legitimately at work; then the agent finishes everything and K more
passes leave every row terminal. A row whose conversation cannot be looked up at all (a
broken lookup, still broken) is the one exception: nobody can decide it. K = 1 +
max_attempts: the longest fault-free path is a start task to resolve (pass 1), then a file
that is listed but whose bytes cannot be had (an LFS object the server lacks), which is
counted once a pass and fails the row on attempt max_attempts; a conversation seen finished
with no file ends in 2 more passes (the grace is over at the second); a video that is there
is stored in pass 2; no other wait outlives the jump before each pass.

Known findings. While issue 12's fixes are pending, the machine recognises the specific
symptom of each finding it has re-discovered (`recognise`) and records it (as a Hypothesis
`event` and in `SEEN`) instead of failing, as long as its number is in `KNOWN_FINDINGS`; the
fix for finding N removes N from that set, and from then on the symptom fails the test. Any
symptom not recognised fails at once: nothing unknown is hidden. Each recognised finding has
a readable replay in `test_findings.py`, marked xfail(strict) until its fix lands. Numbers
"1".."11" are the human review's findings, "N1", "N2"... those this machine found alone.

Limits of the model. It runs the engine and `generate` over the ports' fakes, so what lives
in the adapters (retries, the OpenHands mapping, Supabase's row cap, CLI exit codes) is out
of its reach. The world changes between steps, never in the middle of a pass (only the clock
does, when a call hangs). A lease is never renewed: the engine renews every lease/3 seconds
of real time, which never pass in fake time, so a hang past the lease looks like a renewal
that failed (the store being unreachable for it), a case the engine must survive anyway.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar
from unittest import mock

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from videopoll.model import PENDING, TERMINAL, Action, Item, Status, VideoAsset

from .faults import INJECTED, KINDS, WHENS, Fault
from .world import (
    CONFIG,
    NOT_FOUND_GRACE,
    Command,
    GenerateCmd,
    Outcome,
    PollCmd,
    Video,
    agent_failed,
    new_world,
    object_key,
)

K = 1 + CONFIG.max_attempts
SETTLE_EVERY = 8  # steps between two settles: a settle ends most of what is under way
JUMP = max(CONFIG.lease, CONFIG.artifact_grace, NOT_FOUND_GRACE) + 1

# Findings of issue 12 this machine recognises and tolerates until their fixes land.
# "1".."11": the human review's findings; "N1"...: found by this machine alone.
# Empty: every finding the machine met is fixed (issue 12); a number goes back here only while
# a known symptom waits for its fix.
KNOWN_FINDINGS: frozenset[str] = frozenset()
SEEN: Counter[str] = Counter()  # recognised findings, over every example of the session
VARIANTS: Counter[str] = Counter()  # the same, by "finding:variant"

METHODS = ("pending", "resolve_start", "mark_finished", "mark_generating", "claim", "put",
           "mark_ready", "release", "mark_failed", "record_error", "lesson", "open_video",
           "insert_asset", "states", "resolve", "start", "find", "open")
STORE_METHODS = frozenset(METHODS[:13])
AGENT_EVENTS = ("finish_with_file", "finish", "start_ready", "start_error", "back_to_work",
                "error", "vanish", "break_lookup", "heal_lookup")
GITHUB_CHANGES = ("commit", "commit_lfs", "replace", "remove", "not_mp4", "too_large",
                  "lfs_object_missing", "spoil")

INDEX = st.integers(0, 63)
rare = st.integers(0, 7).map(lambda n: n == 7)
faults = st.one_of(
    st.builds(Fault, method=st.just("*"), nth=st.integers(0, 15), kind=st.sampled_from(KINDS),
              when=st.sampled_from(WHENS)),
    st.builds(Fault, method=st.sampled_from(METHODS), nth=st.integers(0, 2),
              kind=st.sampled_from(KINDS), when=st.sampled_from(WHENS)))
plans = st.lists(faults, max_size=3).map(tuple)
seeds = st.integers(0, 2**16)
polls = st.builds(PollCmd, owner=st.sampled_from(("fresh", "a", "b")), plan=plans,
                  limit=st.integers(0, 7).map(lambda n: n if n in (1, 2) else None),
                  dry_run=rare, stranger=rare, seed=seeds)
generates = st.builds(GenerateCmd, lesson=INDEX, plan=plans, seed=seeds)
commands = st.lists(st.one_of(polls, polls, generates), min_size=1, max_size=3)


class VideopollModel(RuleBasedStateMachine):
    """See the module docstring."""

    backend: ClassVar[str] = "memory"
    known: ClassVar[frozenset[str]] = KNOWN_FINDINGS  # replays set it empty: strict

    def __init__(self) -> None:
        super().__init__()
        # Ids decide the order of rows made at one instant (`pending` sorts by created_at,
        # id): drawn from a seeded generator, so an example replays exactly.
        ids = random.Random(0)
        self.ids = mock.patch("uuid.uuid4", lambda: uuid.UUID(int=ids.getrandbits(128),
                                                               version=4))
        self.ids.start()
        self.home = Path(tempfile.mkdtemp(prefix="videopoll-model-"))
        self.world = new_world(self.backend, self.home / "home")
        self.rows: dict[str, VideoAsset] = {}
        self.objects: dict[str, bytes] = {}
        self.before: dict[str, VideoAsset] = {}
        self.before_objects: dict[str, bytes] = {}
        self.retried: set[str] = set()
        self.orphans: set[str] = set()
        self.outcomes: list[Outcome] = []
        self.steps = 0  # since the last settle
        self.log: list[str] = []

    def teardown(self) -> None:
        """Every example ends with the liveness check, unless it already failed (Hypothesis
        calls this in a `finally`: the exception in flight is visible here)."""
        try:
            if sys.exc_info()[0] is None:
                self.settle()
        finally:
            self.close()

    def close(self) -> None:
        asyncio.run(self.world.backend.close())
        shutil.rmtree(self.home, ignore_errors=True)
        self.ids.stop()

    # -- rules: the world ----------------------------------------------------------------------
    @rule(kind=st.sampled_from(("normal", "normal", "unsafe", "malformed")))
    def app_inserts_a_row(self, kind: str) -> None:
        """The app (the old system) inserts a row for a conversation already running."""
        self.world.app_row(unsafe=kind == "unsafe", malformed=kind == "malformed")
        self.after_step([])

    def pick(self, which: int, applies: Callable[[Video], bool]) -> Video | None:
        """A video the event applies to; among them, one whose row is still pending while
        there is one (things happen to videos in the making)."""
        videos = [v for v in self.world.videos.values() if applies(v)]
        live = [v for v in videos if v.asset_id in self.rows
                and self.rows[v.asset_id].status in PENDING]
        videos = live or videos
        return videos[which % len(videos)] if videos else None

    def agent_says(self, video: Video) -> Status | None:
        state = self.world.state_of(video)
        return None if state is None else state.state

    @rule(which=INDEX, what=st.sampled_from(AGENT_EVENTS))
    def agent_moves(self, which: int, what: str) -> None:
        """The agent: a start task becomes a conversation or fails; a conversation finishes
        (committing the file, or not yet), goes back to work (it asked a question), fails,
        is deleted, or its follow-up lookup breaks (and heals)."""
        w = self.world
        working = (Status.GENERATING, Status.FINISHED)
        applies: dict[str, Callable[[Video], bool]] = {
            "start_ready": lambda v: self.task_status(v) is Status.STARTING,
            "start_error": lambda v: self.task_status(v) is Status.STARTING,
            "finish_with_file": lambda v: self.agent_says(v) is Status.GENERATING,
            "finish": lambda v: self.agent_says(v) is Status.GENERATING,
            "back_to_work": lambda v: self.agent_says(v) is Status.FINISHED,
            "error": lambda v: self.agent_says(v) in working,
            "vanish": lambda v: self.agent_says(v) is not None,
            "break_lookup": lambda v: v.conversation is not None
            and v.conversation not in w.agent.broken,
            "heal_lookup": lambda v: v.conversation in w.agent.broken,
        }
        video = self.pick(which, applies[what])
        if video is None:
            return
        if what == "start_ready":
            video.conversation = w.agent.ready(video.start_task or "")
        elif what == "start_error":
            w.agent.fail_start(video.start_task or "")
        elif what in ("finish_with_file", "finish"):
            if what == "finish_with_file" and not video.unsafe \
                    and video.path not in w.artifacts.files:
                w.commit(video.path, w.new_content())
            w.set_state(video, Status.FINISHED)
        elif what == "back_to_work":
            w.set_state(video, Status.GENERATING)
        elif what == "error":
            w.set_state(video, agent_failed())
        elif what == "vanish":
            w.set_state(video, None)
        elif what == "break_lookup":
            w.agent.break_lookup(video.conversation or "")
        else:
            w.agent.heal_lookup(video.conversation or "")
        self.after_step([])

    def task_status(self, video: Video) -> Status | None:
        task = self.world.agent.start_tasks.get(video.start_task or "")
        return None if task is None else task.state

    @rule(which=INDEX, change=st.sampled_from(GITHUB_CHANGES))
    def github_changes(self, which: int, change: str) -> None:
        """A commit adds, replaces (as a plain blob or through Git LFS) or removes the file at
        a video's path, or puts a non-MP4 or an oversized file there; the LFS server loses an
        object; the CDN damages the next downloads of a file."""
        w = self.world
        files = w.artifacts.files
        needs_file = change in ("remove", "lfs_object_missing", "spoil")
        video = self.pick(which, lambda v: not v.unsafe and (
            (v.path in files) == needs_file or change in ("replace", "not_mp4", "too_large")))
        if video is None:
            return
        path = video.path
        if change in ("commit", "commit_lfs", "replace"):
            w.commit(path, w.new_content(), lfs=change == "commit_lfs")
        elif change == "remove":
            w.remove(path)
        elif change == "not_mp4":
            w.commit(path, b"GIF89a" + bytes(2500))
        elif change == "too_large":
            w.commit(path, w.new_content(CONFIG.max_bytes + 500))
        elif change == "lfs_object_missing":
            w.artifacts.missing_object(path)
        else:
            w.artifacts.spoil[path] += 2
        self.after_step([])

    @rule(seconds=st.sampled_from((1, 60, 120, 301, 601, 3601)))
    def time_passes(self, seconds: int) -> None:
        """The clock jumps, past leases, graces and the generation limit."""
        self.world.clock.advance(seconds)
        self.after_step([])

    @rule(which=st.none() | INDEX)
    def retry(self, which: int | None) -> None:
        """`videopoll retry <asset>` (or `--failed`: every failed row)."""
        w = self.world
        video = None if which is None else self.pick(
            which, lambda v: v.asset_id in self.rows
            and self.rows[v.asset_id].status is Status.FAILED)
        if which is not None and video is None:
            return
        ids = None if video is None else [video.asset_id]
        changed = asyncio.run(w.backend.store.retry(ids))
        now = w.clock.now()
        for row in changed:
            again = w.videos[row.id]
            again.retried = now
            state = w.state_of(again)
            finished = state is not None and state.state is Status.FINISHED
            again.finished_since = now if finished else None
            w.spoiled[again.path] = 0
        self.after_step([], retried={r.id for r in changed})

    # -- rules: the processes ------------------------------------------------------------------
    @rule(cmds=commands)
    def run(self, cmds: list[Command]) -> None:
        """One to three concurrent processes (poll passes, generates), each with its faults."""
        if any(isinstance(c, GenerateCmd) for c in cmds) and not self.world.lessons:
            self.world.lesson()
        self.after_step(self.world.execute(cmds))

    @precondition(lambda self: self.steps >= SETTLE_EVERY)
    @rule()
    def settle(self) -> None:
        """Liveness: faults stop; K clean passes, each after a jump past the lease and the
        graces, end every row the agent is not still working on; then the agent finishes
        everything and K more passes end every row."""
        w = self.world
        w.artifacts.spoil.clear()
        for phase in ("faults stopped", "agent finished"):
            if phase == "agent finished":
                self.agent_finishes_everything()
            last: Outcome | None = None
            for _ in range(K):
                w.clock.advance(JUMP)
                (last,) = w.execute([PollCmd()])
                self.after_step([last])
            assert last is not None and last.summary is not None
            items = {i.asset_id: i for i in last.summary.items}
            for row in self.rows.values():
                if row.status in TERMINAL or self.still_working(row, phase):
                    continue
                self.violation(f"liveness ({phase}): after {K} clean passes the row is "
                               f"{row.status}, last item {items.get(row.id)}",
                               self.recognise_stuck(row, items.get(row.id)))
        self.steps = 0

    def agent_finishes_everything(self) -> None:
        w = self.world
        for video in w.videos.values():
            task = w.agent.start_tasks.get(video.start_task or "")
            if task is not None and task.state is Status.STARTING:
                video.conversation = w.agent.ready(task.id)
            state = w.state_of(video)
            if state is not None and state.state is Status.GENERATING:
                if not video.unsafe and video.path not in w.artifacts.files:
                    w.commit(video.path, w.new_content())
                w.set_state(video, Status.FINISHED)

    def still_working(self, row: VideoAsset, phase: str) -> bool:
        """The agent is legitimately still at it (or cannot be asked about it)."""
        video = self.world.videos[row.id]
        if video.conversation in self.world.agent.broken:
            return True
        if self.nobody_known(row):
            return True
        if phase != "faults stopped":
            return False
        task = self.world.agent.start_tasks.get(video.start_task or "")
        state = self.world.state_of(video)
        return (row.status is Status.STARTING and task is not None
                and task.state is Status.STARTING) or (
            state is not None and state.state is Status.GENERATING)

    def nobody_known(self, row: VideoAsset) -> bool:
        """DESIGN 6.1's rule: when OpenHands knows none of the pending conversations (several
        of them; or the one, while the key sees no conversation at all), that is far more
        likely a wrong key or server than videos lost, so nothing is failed and the rows
        wait, undecidable, with the pass saying why. Rows `generate` just wrote (starting)
        are not known yet by design and do not count; such a row whose start never landed
        waits the same way while the key sees nothing at all (it cannot tell a lost start
        from a start made under another account's key)."""
        w = self.world
        if row.status is Status.STARTING:  # its start never landed, and the key sees nothing
            return row.conversation_id not in w.agent.planned.values() \
                and not w.agent.conversations
        asked = [r for r in self.rows.values() if r.status in PENDING
                 and r.status is not Status.STARTING and r.conversation_id]
        if not asked or any(w.agent.conversations.get(r.conversation_id or "") is not None
                            for r in asked):
            return False
        return len(asked) >= 2 or not w.agent.conversations

    # -- checks ----------------------------------------------------------------------------
    def after_step(self, outcomes: list[Outcome], retried: Iterable[str] = ()) -> None:
        w = self.world
        self.steps += 1
        self.before, self.before_objects = self.rows, self.objects
        self.rows = asyncio.run(w.backend.rows())
        self.objects = w.backend.objects()
        w.learn(self.rows)
        self.retried = set(retried)
        self.outcomes = outcomes
        self.check_transitions()
        self.check_failures()
        self.check_outcomes(outcomes)
        self.check_nothing_doubled(outcomes)
        self.objects_hold_verified_bytes()  # as the @invariants, for replays of steps
        self.ready_rows_hold_their_object()

    def violation(self, message: str, recognised: str | None = None) -> None:
        """A broken promise: recorded when it is a known finding's symptom, else fatal.
        `recognised` is "N" or "N:variant" (say, which store call's error escaped)."""
        finding, _, variant = (recognised or "").partition(":")
        if finding and finding in self.known:
            SEEN[finding] += 1
            VARIANTS[recognised or ""] += 1
            event(f"issue 12 finding {recognised}")
            return
        named = f" [issue 12 finding {finding}]" if finding else ""
        raise AssertionError(message + named)

    @invariant()
    def objects_hold_verified_bytes(self) -> None:
        """An object exists only under a row's key, holding bytes GitHub listed at that row's
        path: an MP4 within VIDEOPOLL_MAX_BYTES."""
        keys = {object_key(r): r for r in self.rows.values()}
        for key, data in self.objects.items():
            row = keys.get(key)
            assert row is not None, f"object {key} belongs to no row"
            video = self.world.videos[row.id]
            assert data in self.world.versions.get(video.path, []), \
                f"object {key} holds bytes GitHub never listed at {video.path}"
            assert data[4:8] == b"ftyp" and len(data) <= CONFIG.max_bytes, \
                f"object {key} is not a verified video ({len(data)} bytes)"

    @invariant()
    def ready_rows_hold_their_object(self) -> None:
        """`ready` only with the verified object stored under the row's key."""
        for row in self.rows.values():
            if row.status is Status.READY:
                key = object_key(row)
                assert row.storage_path == key, f"{row.id} ready with path {row.storage_path}"
                assert key in self.objects, f"{row.id} ready but nothing stored under {key}"

    def check_transitions(self) -> None:
        for asset_id, was in self.before.items():
            now = self.rows.get(asset_id)
            assert now is not None, f"row {asset_id} disappeared"
            if was.status is Status.READY:
                assert now.status is Status.READY and now.storage_path == was.storage_path, \
                    f"{asset_id} left ready: {now.status}"
                key = object_key(was)
                assert self.objects.get(key) == self.before_objects.get(key), \
                    f"the published object {key} changed or vanished"
            if was.status is Status.FAILED and now.status is not Status.FAILED:
                assert asset_id in self.retried, f"{asset_id} left failed without a retry"

    def check_failures(self) -> None:
        for asset_id, row in self.rows.items():
            was = self.before.get(asset_id)
            if row.status is not Status.FAILED or (was and was.status is Status.FAILED):
                continue
            why = self.unjustified(row)
            if why is not None:
                self.violation(f"{asset_id} failed with {row.error!r}: {why}",
                               self.recognise_failure(row))

    def unjustified(self, row: VideoAsset) -> str | None:
        """None when the world backs the row's failure reason, else what the world says."""
        w = self.world
        video = w.videos[row.id]
        reason, now = row.error or "", w.clock.now()
        age = (now - video.age_from).total_seconds()
        state = w.state_of(video)
        task = w.agent.start_tasks.get(video.start_task or "")
        data = w.artifacts.files.get(video.path)
        since = video.finished_since
        backed: list[tuple[bool, Callable[[], bool]]] = [
            (reason == "malformed conversation id", lambda: video.malformed),
            (reason.startswith("unsafe github_path"), lambda: video.unsafe),
            (reason == "conversation not found",
             lambda: state is None and age >= NOT_FOUND_GRACE),
            (reason == "start task not found", lambda: task is None and age >= NOT_FOUND_GRACE),
            (reason.startswith("agent could not start"),
             lambda: task is not None and task.state is Status.FAILED),
            (reason.startswith("stuck: still generating"),
             lambda: state is not None and state.state is Status.GENERATING
             and age >= CONFIG.max_generation),
            (reason == "conversation finished but video not in GitHub",
             lambda: state is not None and state.state is Status.FINISHED and data is None
             and since is not None
             and (now - since).total_seconds() >= CONFIG.artifact_grace),
            ("over VIDEOPOLL_MAX_BYTES" in reason,
             lambda: data is not None and len(data) > CONFIG.max_bytes),
            (reason.startswith("not an MP4"), lambda: data is not None and data[4:8] != b"ftyp"),
            (reason.endswith(" attempts)") and "unavailable" not in reason,
             lambda: w.spoiled[video.path] >= CONFIG.max_attempts),
            # Listed, but the LFS server lacks the object: counted, then failed.
            (reason.endswith(" attempts)") and "unavailable" in reason,
             lambda: video.path in w.artifacts.missing),
            # A row `generate` wrote whose start never reached the agent.
            (reason.startswith("the agent never started"),
             lambda: row.conversation_id not in w.agent.planned.values()
             and age >= NOT_FOUND_GRACE),
            (state is not None and state.state is Status.FAILED and reason == state.reason,
             lambda: True),
        ]
        if any(matches and holds() for matches, holds in backed):
            return None
        transient = " (a transient fault's message)" if reason.startswith(INJECTED) else ""
        return (f"the world does not back it{transient}: agent {state}, start task {task}, "
                f"file {None if data is None else len(data)} bytes, age {age:.0f}s, "
                f"finished since {since}, spoiled downloads {w.spoiled[video.path]}")

    def check_outcomes(self, outcomes: list[Outcome]) -> None:
        polls = [o for o in outcomes if isinstance(o.command, PollCmd)]
        excused: set[str] = set()
        for o in outcomes:
            excused |= {f.asset_id for f in o.process.fired if f.effect and f.asset_id}
            excused |= {a for f in o.process.fired if f.effect for a in f.batch}
            if o.killed or o.error is not None:
                excused |= o.touched()
        stored: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for o in polls:
            assert isinstance(o.command, PollCmd)
            if o.error is not None:
                self.violation(f"poll_once raised {o.error!r} ({o.owner}, faults fired: "
                               f"{[str(f.fault) for f in o.process.fired]})",
                               self.recognise_escape(o))
            elif not o.killed and o.leftovers:
                self.violation(f"{o.leftovers} task(s) of {o.owner}'s pass outlived it")
            if o.summary is None:
                continue
            summary, seen = o.summary, o.pending_seen()
            ids = [i.asset_id for i in summary.items]
            assert sorted(ids) == sorted(r.id for r in seen), \
                f"{o.owner}: items {ids} are not the rows it examined {[r.id for r in seen]}"
            counts = summary.to_json()
            assert counts["checked"] == len(seen) == counts["stillGenerating"] + \
                counts["processed"] + counts["failed"], f"{o.owner}: counts {counts}"
            assert summary.found >= summary.processed, f"{o.owner}: found < processed"
            if o.command.dry_run:
                continue
            for item in summary.items:
                now = self.rows[item.asset_id].status
                if item.action is Action.STORED:
                    stored[item.asset_id] += 1
                    assert now is Status.READY, f"{item} counted stored, row is {now}"
                if item.action is Action.FAILED:
                    failed[item.asset_id] += 1
                    assert now is Status.FAILED, f"{item} counted failed, row is {now}"
            if len(outcomes) == 1:
                self.check_items(summary.items, excused)
        self.check_counted_once(stored, Status.READY, "stored", excused)
        self.check_counted_once(failed, Status.FAILED, "failed", excused)
        if polls and all(isinstance(o.command, PollCmd) and o.command.dry_run
                         for o in outcomes):
            assert {i: r.status for i, r in self.rows.items()} == \
                {i: r.status for i, r in self.before.items()}, "a dry run moved rows"
            assert self.objects == self.before_objects, "a dry run stored objects"

    def check_items(self, items: list[Item], excused: set[str]) -> None:
        """A pass alone: each item's state is the row's status after the pass."""
        for item in items:
            now = self.rows[item.asset_id].status
            if item.asset_id not in excused and item.state is not now:
                self.violation(f"item says {item.state} ({item.action}: {item.detail}), "
                               f"the row is {now}", self.recognise_item(item))

    def check_counted_once(self, counted: Counter[str], status: Status, action: str,
                           excused: set[str]) -> None:
        for asset_id, row in self.rows.items():
            was = self.before.get(asset_id)
            moved = row.status is status and (was is None or was.status is not status)
            if (moved and counted[asset_id] != 1 and asset_id not in excused) or \
                    counted[asset_id] > 1:
                self.violation(f"{asset_id} became {status}, counted {action} "
                               f"{counted[asset_id]} time(s) over the step's summaries")

    def check_nothing_doubled(self, outcomes: list[Outcome]) -> None:
        # A row follows an agent by its start task, or (written before the start, which may
        # have arrived without its answer) by the conversation id that start asked for.
        started_for = {r.start_task_id for r in self.rows.values() if r.start_task_id}
        planned = {r.conversation_id for r in self.rows.values() if r.conversation_id}
        started_for |= {t for t, cid in self.world.agent.planned.items() if cid in planned}
        for o in outcomes:
            if not isinstance(o.command, GenerateCmd):
                continue
            if o.process.calls["start"] > 1:
                self.violation(f"one generate started {o.process.calls['start']} "
                               "conversations")
            if o.row is not None:
                others = [r for r in self.rows.values() if r.lesson_id == o.lesson_id
                          and r.id != o.row.id and r.status in PENDING
                          and (r.id in self.before and self.before[r.id].status in PENDING
                               or r.id not in self.before)]
                if others:
                    self.violation(f"generate without --force left lesson {o.lesson_id} "
                                   f"with open videos {[o.row.id] + [r.id for r in others]}",
                                   self.recognise_generate(o, others))
        for task_id in self.world.agent.start_tasks:
            if task_id not in started_for and task_id not in self.orphans:
                self.orphans.add(task_id)
                self.violation(f"start task {task_id} (a running agent) has no row",
                               self.recognise_orphan(task_id, outcomes))

    # -- known findings: the specific symptoms, recognised ---------------------------------------
    def recognise_failure(self, row: VideoAsset) -> str | None:
        """Finding 7: a poller configured with another account's key (OpenHands knows none
        of the ids) fails rows whose conversation (or start task) is alive and well."""
        video = self.world.videos[row.id]
        stranger = any(isinstance(o.command, PollCmd) and o.command.stranger
                       for o in self.outcomes)
        alive = (row.error == "conversation not found" and self.world.state_of(video)) or (
            row.error == "start task not found"
            and video.start_task in self.world.agent.start_tasks)
        return f"7:{row.error}" if stranger and alive else None

    def recognise_escape(self, o: Outcome) -> str | None:
        """Finding 3: a store call's transient error ends the whole pass (no summary)."""
        fired = next((f for f in o.process.fired if f.raised is o.error), None)
        if fired is not None and fired.method in STORE_METHODS:
            return f"3:{fired.method}"
        return None

    def recognise_stuck(self, row: VideoAsset, item: Item | None) -> str | None:
        """Finding 6: the tree lists an LFS pointer whose object the LFS server lacks; each
        download fails and is deferred, and the grace never applies (the file is "found").
        (Findings 1 and 4 below.)"""
        video = self.world.videos[row.id]
        # Finding 1: a `transferring` row whose claim ran out (its poller died) cannot be
        # failed: the engine's mark_failed names no owner, the store refuses it, and the pass
        # reports the row "changed by another poller", every pass, for ever.
        expired = row.claimed_until is not None and row.claimed_until <= self.world.clock.now()
        if row.status is Status.TRANSFERRING and expired and item is not None \
                and item.action is Action.SKIPPED and item.detail == "changed by another poller":
            return "1"
        if item is not None and item.action is Action.DEFERRED \
                and video.path in self.world.artifacts.missing and "LFS object" in item.detail:
            return "6"
        # Finding 4: one conversation's failing lookup defers every other row, for ever.
        others = {str(exc) for cid, exc in self.world.agent.broken.items()
                  if cid != video.conversation}
        if item is not None and item.action is Action.DEFERRED and item.detail in others:
            return "4"
        return None

    def recognise_generate(self, o: Outcome, others: list[VideoAsset]) -> str | None:
        """Finding 8: two concurrent `generate`s for one lesson both insert a row."""
        concurrent = [x for x in self.outcomes if x is not o
                      and isinstance(x.command, GenerateCmd) and x.lesson_id == o.lesson_id]
        new = all(r.id not in self.before for r in others)  # inserted during this step
        return "8:twins" if concurrent and new else None

    def recognise_item(self, item: Item) -> str | None:
        """New finding N1: a row left `transferring` by a dead or misinformed poller (lease
        expired) whose agent went back to work is reported `generating` but stays
        `transferring`: `mark_generating` moves only `finished` rows, and `finished_at`
        stays."""
        row = self.rows[item.asset_id]
        expired = row.claimed_until is not None and row.claimed_until <= self.world.clock.now()
        if row.status is Status.TRANSFERRING and expired and item.state is Status.GENERATING \
                and item.action is Action.NONE:
            return "N1"
        # New finding N2: the item of a deferred transfer keeps the status the row had before
        # the claim: `transferring` (an expired claim taken over) although the release made
        # it `finished`, or `finished` although a failed release left it `transferring`.
        if item.action is Action.DEFERRED \
                and {item.state, row.status} == {Status.FINISHED, Status.TRANSFERRING}:
            return "N2"
        return None

    def recognise_orphan(self, task_id: str, outcomes: list[Outcome]) -> str | None:
        """Finding 8: `generate` starts the agent first and inserts the row second; a fault or
        a kill in between (or a lost answer to the start) leaves an agent with no row."""
        for o in outcomes:
            if not isinstance(o.command, GenerateCmd) or o.row is not None:
                continue
            started = any(m == "start" and getattr(r, "id", None) == task_id
                          for m, _, r in o.process.results)
            lost = any(f.method == "start" and f.effect for f in o.process.fired)
            if started or lost:
                return "8:orphan"
        return None


class LocalStoreModel(VideopollModel):
    """The same machine over the local store (SQLite in a temporary folder)."""

    backend = "local"


__all__ = ["JUMP", "K", "KNOWN_FINDINGS", "SEEN", "LocalStoreModel", "VideopollModel"]
