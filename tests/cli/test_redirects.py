"""Credentials stay with the origin they were made for, whatever a redirect says.

Each service is made to answer a real 302 to a recording server on another loopback address
(another origin). OpenHands and Supabase have no business sending us to another host: the
redirect is refused before anything reaches the recorder. GitHub's downloads may leave for a
CDN: they arrive there without any of our credential headers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from videopoll.sandbox.server import Fault, Request, Response, StandIn

from .conftest import Stack

CREDENTIAL_HEADERS = ("authorization", "apikey", "x-session-api-key")


class Recorder(StandIn):
    """A server on another origin that records what arrives and answers 404."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__("127.0.0.3")
        for method in ("GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"):
            self.route(method, "/.*", "any", self._record)

    def _record(self, request: Request) -> Response:
        return Response.json({"message": "Not Found"}, 404)

    def headers_seen(self) -> list[dict[str, str]]:
        with self.lock:
            return [{k.lower(): v for k, v in headers.items()} for _, _, headers in self.log]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


def redirect_to(recorder: Recorder, status: int = 302) -> Fault:
    return Fault("status", status=status, headers={"Location": f"{recorder.url}/stolen"},
                 body=b"", times=None)


def assert_no_credentials(recorder: Recorder, *secrets: str) -> None:
    for headers in recorder.headers_seen():
        for name in CREDENTIAL_HEADERS:
            assert name not in headers, f"{name} reached the other origin"
        for value in headers.values():
            for secret in secrets:
                assert secret not in value


@pytest.mark.parametrize("auth", ["bearer", "session"])
@pytest.mark.parametrize("status", [302, 307])
def test_openhands_redirect_to_another_origin_is_refused(
        stack: Stack, recorder: Recorder, auth: str, status: int) -> None:
    """A proxy in front of OpenHands that redirects elsewhere gets no key: not in either auth
    mode, not as a header httpx would keep (X-Session-API-Key)."""
    stack.sandbox.openhands.auth = auth
    asset, _, _ = stack.video("RUNNING", "running")
    stack.sandbox.openhands.inject("*", redirect_to(recorder, status))
    result = stack.cli("poll", "--json", env={"OPENHANDS_AUTH": auth})
    assert result.code == 1
    assert "refused a redirect" in result.json["errors"][0]["detail"]
    assert recorder.total() == 0
    assert stack.seed.row(asset)["status"] == "generating"


def test_a_same_origin_redirect_is_followed_with_the_key(stack: Stack) -> None:
    """Redirects that stay on the origin (a trailing-slash fix, a moved route) still work."""
    oh = stack.sandbox.openhands
    asset, _, _ = stack.video("RUNNING", "running")
    oh.inject("conversations", Fault("status", status=307, headers={
        "Location": "/api/v1/app-conversations?" + "&".join(
            f"ids={stack.seed.row(asset)['conversation_id']}" for _ in range(1))},
        body=b"", times=1))
    result = stack.cli("poll", "--json")
    assert result.code == 0, result.err
    assert result.json["stillGenerating"] == 1


@pytest.mark.postgres
def test_supabase_redirect_to_another_origin_is_refused(stack: Stack, recorder: Recorder,
                                                        video: bytes) -> None:
    """Neither PostgREST, Storage nor the apikey header follows a redirect off the project."""
    if stack.seed.kind != "supabase":
        pytest.skip("the local store makes no HTTP requests")
    from .conftest import SupabaseSeed

    assert isinstance(stack.seed, SupabaseSeed)
    stack.video("RUNNING", "finished", commit=video)
    stack.seed.standin.inject("*", redirect_to(recorder))
    result = stack.cli("poll", "--json")
    assert result.code == 1
    assert "refused a redirect" in result.out + result.err
    assert recorder.total() == 0


@pytest.mark.postgres
def test_tus_redirect_to_another_origin_is_refused(stack: Stack, recorder: Recorder) -> None:
    """A resumable upload (over 6 MiB) whose PATCH is redirected elsewhere sends no bytes and
    no key there; the row stays pending for the next pass."""
    if stack.seed.kind != "supabase":
        pytest.skip("the local store makes no HTTP requests")
    from videopoll.sandbox.mp4 import mp4_of_size

    from .conftest import SupabaseSeed

    assert isinstance(stack.seed, SupabaseSeed)
    big = mp4_of_size(7 * 1024 * 1024, "big")
    asset, _, _ = stack.video("RUNNING", "finished", commit=big)
    stack.seed.standin.inject("tus.patch", redirect_to(recorder, 307))
    result = stack.cli("poll", "--json")
    assert result.code == 1
    assert recorder.total() == 0
    assert stack.seed.row(asset)["status"] in ("finished", "transferring")


def test_github_download_redirect_arrives_without_credentials(
        stack: Stack, recorder: Recorder, large_video: bytes) -> None:
    """A blob download redirected to a CDN on another origin carries no token there."""
    stack.video("RUNNING", "finished", commit=large_video)  # over 1 MB: not inline
    stack.sandbox.github.inject("blobs", redirect_to(recorder))
    stack.cli("poll", "--json")
    assert recorder.total() >= 1
    assert_no_credentials(recorder, stack.sandbox.github_token)


def test_lfs_download_redirect_drops_the_batch_answers_headers(
        stack: Stack, recorder: Recorder, video: bytes) -> None:
    """The LFS batch answer's own headers (its download token) stay with the object host."""
    stack.video("RUNNING", "finished", commit=video, lfs=True)
    stack.sandbox.github.objects.inject("lfs_object", redirect_to(recorder))
    stack.cli("poll", "--json")
    assert recorder.total() >= 1
    assert_no_credentials(recorder, stack.sandbox.github_token)
    # The object host itself did get its token: stripping happened only across origins.
    sent = [h.get("Authorization", "") for _, path, h in stack.sandbox.github.objects.log
            if path.startswith("/lfs/")]
    assert sent and all(value.startswith("RemoteAuth ") for value in sent)
