"""A saved upload URL is data a row carried: before any request it must be an upload of the
configured Storage endpoint, or it is forgotten and the upload starts afresh."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from videopoll.errors import ProtocolError
from videopoll.sandbox.server import Fault, Response, StandIn
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.supabase import tus

from .conftest import BUCKET

pytestmark = pytest.mark.postgres
SIZE = tus.CHUNK + 1024


class Recorder(StandIn):
    """Another origin that would happily collect a key: records every request."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__("127.0.0.3")
        for method in ("HEAD", "PATCH", "DELETE", "POST", "GET"):
            self.route(method, "/.*", "any", lambda r: Response(204, b"", {
                "Upload-Offset": "6291456", "Tus-Resumable": "1.0.0"}))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


async def pieces(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1 << 20):
        yield data[start:start + (1 << 20)]


def hostile_urls(supa: SupabaseStandIn, recorder: Recorder) -> list[str]:
    endpoint = f"{supa.url}/storage/v1/upload/resumable"
    host, port = supa.url.rsplit(":", 1)
    return [
        f"{recorder.url}/storage/v1/upload/resumable/abc",  # another host
        f"{host}:{int(port) + 1}/storage/v1/upload/resumable/abc",  # another port
        endpoint.replace("http://", "https://") + "/abc",  # another scheme
        f"{supa.url}/rest/v1/rpc/videopoll_apply",  # our origin, not an upload
        f"{endpoint}/../../../rest/v1/lesson_assets",  # climbing out
        f"http://user:pass@{supa.url.split('://')[1]}/storage/v1/upload/resumable/abc",
        "not a url at all",
    ]


@pytest.mark.parametrize("case", range(7))
async def test_a_saved_url_elsewhere_gets_no_request_and_the_upload_starts_afresh(
        supa: SupabaseStandIn, http: httpx.AsyncClient, recorder: Recorder, case: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """Whatever the row says, the key only goes to our own Storage endpoint; the video still
    arrives, from a fresh upload, and the saved state is forgotten first."""
    client = tus.TusClient(http, f"{supa.url}/storage/v1", supa.service_key, BUCKET)
    data = random.Random(case).randbytes(SIZE)
    saved_url = hostile_urls(supa, recorder)[case]
    saves: list[tuple[str, int, str]] = []

    async def save(url: str, offset: int, prefix: str) -> bool:
        saves.append((url, offset, prefix))
        return True

    saved = tus.Saved(saved_url, "digest", tus.CHUNK, hashlib.sha256(data[:tus.CHUNK]).hexdigest())
    with caplog.at_level(logging.WARNING, logger="videopoll"):
        await tus.upload(client, pieces(data), name=f"videos/x/{case}.mp4", size=SIZE,
                         content_type="video/mp4", digest="digest", saved=saved, save=save)
    assert recorder.total() == 0
    assert saves[0] == ("", 0, "")  # forgotten before anything else happens
    assert all(client.owns(url) for url, _, _ in saves[1:] if url)
    assert "ignoring a saved upload URL" in caplog.text
    assert supa.writes[f"{BUCKET}/videos/x/{case}.mp4"] == 1


async def test_an_upload_created_elsewhere_is_refused(supa: SupabaseStandIn,
                                                      http: httpx.AsyncClient,
                                                      recorder: Recorder) -> None:
    """A create answer whose Location points off the endpoint is not followed with PATCHes."""
    client = tus.TusClient(http, f"{supa.url}/storage/v1", supa.service_key, BUCKET)
    supa.inject("tus.create", Fault("status", status=201, body=b"", headers={
        "Location": f"{recorder.url}/storage/v1/upload/resumable/x", "Tus-Resumable": "1.0.0"}))
    with pytest.raises(ProtocolError, match="outside"):
        await client.create(name="videos/x/y.mp4", size=SIZE, content_type="video/mp4")
    assert recorder.total() == 0


def test_owns_is_exact_about_the_origin() -> None:
    """The origin check compares scheme, host and port (defaults made explicit), and path."""
    client = tus.TusClient(httpx.AsyncClient(), "https://p.supabase.co/storage/v1", "k", "b")
    assert client.owns("https://p.supabase.co/storage/v1/upload/resumable/abc")
    assert client.owns("https://p.supabase.co:443/storage/v1/upload/resumable/abc")
    assert not client.owns("https://p.supabase.co.evil.test/storage/v1/upload/resumable/a")
    assert not client.owns("https://p.supabase.co/storage/v1/upload/resumable")
    assert not client.owns("https://p.supabase.co/storage/v1/upload/resumableX/a")
    assert not client.owns("http://p.supabase.co/storage/v1/upload/resumable/abc")
