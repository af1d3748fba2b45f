"""In-memory stand-ins for the ports, shipped in the package for unit tests.

Like procrastinate's `InMemoryConnector`: the engine's tests build it on these fakes, each
with a call log (`calls`, `count(name)`), fault switches (`fail_next(method, exc)`) and
`reset()`. `InMemoryStore` keeps `LocalStore`'s semantics (the contract suite in
tests/contract runs on both); `FakeClock` drives leases and grace periods without sleeping.
"""

from .fakes import (
    HTML_PAGE,
    STATES_BATCH,
    FakeAgent,
    FakeArtifacts,
    fake_mp4,
    git_blob_sha,
    lfs_pointer,
)
from .faults import FakeClock, Recorder
from .harness import StoreHarness
from .rows import Row
from .store import InMemoryStore

__all__ = [
    "HTML_PAGE",
    "STATES_BATCH",
    "FakeAgent",
    "FakeArtifacts",
    "FakeClock",
    "InMemoryStore",
    "Recorder",
    "Row",
    "StoreHarness",
    "fake_mp4",
    "git_blob_sha",
    "lfs_pointer",
]
