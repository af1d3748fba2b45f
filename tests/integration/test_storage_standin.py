"""The Storage stand-in on the wire: error shapes, RLS, limits and TUS as DESIGN 8.3 has them."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import pytest

from videopoll.sandbox.supabase import SupabaseStandIn

from .conftest import BUCKET, Seed

pytestmark = pytest.mark.postgres
MiB = 1024 * 1024
OBJ = f"/storage/v1/object/{BUCKET}"


def upload(client: Any, name: str, data: bytes, *, upsert: bool = False,
           mime: str = "video/mp4") -> Any:
    """What storage3 sends: multipart with a cacheControl field and the file part."""
    return client.post(f"{OBJ}/{name}", files={"file": (name.split("/")[-1], data, mime)},
                       data={"cacheControl": "3600"},
                       headers={"x-upsert": "true" if upsert else "false"})


def test_duplicate_without_upsert_is_http_400_with_status_409(seed: Seed, supa: SupabaseStandIn,
                                                              wire: Any) -> None:
    client = wire()
    first = upload(client, "videos/a.mp4", b"one")
    assert first.status_code == 200
    assert first.json()["Key"] == f"{BUCKET}/videos/a.mp4"
    again = upload(client, "videos/a.mp4", b"two")
    assert again.status_code == 400
    assert again.json() == {"statusCode": "409", "code": "ResourceAlreadyExists",
                            "error": "Duplicate", "message": "The resource already exists"}
    replaced = upload(client, "videos/a.mp4", b"three", upsert=True)
    assert replaced.status_code == 200
    assert client.get(f"{OBJ}/videos/a.mp4").content == b"three"
    assert supa.writes[f"{BUCKET}/videos/a.mp4"] == 2  # the refused one never wrote
    assert [w.sha256 for w in supa.write_log] == [hashlib.sha256(b"one").hexdigest(),
                                                  hashlib.sha256(b"three").hexdigest()]


def test_missing_bucket_object_and_info(seed: Seed, wire: Any) -> None:
    client = wire()
    nobucket = upload(client, "x.mp4", b"x").request
    got = client.post(str(nobucket.url).replace(BUCKET, "nope"),
                      files={"file": ("x.mp4", b"x", "video/mp4")})
    assert (got.status_code, got.json()["statusCode"], got.json()["error"]) == (
        400, "404", "Bucket not found")
    missing = client.get(f"{OBJ}/absent.mp4")
    assert (missing.status_code, missing.json()["statusCode"], missing.json()["error"]) == (
        400, "404", "not_found")
    info = client.get(f"/storage/v1/object/info/{BUCKET}/x.mp4").json()
    assert (info["size"], info["content_type"], info["cache_control"]) == (
        1, "video/mp4", "max-age=3600")
    head = client.head(f"/storage/v1/object/authenticated/{BUCKET}/x.mp4")
    assert (head.status_code, head.headers["Content-Length"]) == (200, "1")


def test_raw_body_put_and_list(seed: Seed, supa: SupabaseStandIn, wire: Any) -> None:
    client = wire()
    raw = client.post(f"{OBJ}/videos/l/raw.mp4", content=b"raw bytes",
                      headers={"Content-Type": "video/mp4"})
    assert raw.status_code == 200
    put = client.put(f"{OBJ}/videos/l/raw.mp4", content=b"newer",
                     headers={"Content-Type": "video/mp4"})
    assert put.status_code == 200
    assert client.get(f"{OBJ}/videos/l/raw.mp4").content == b"newer"
    assert [w.via for w in supa.write_log] == ["upload", "update"]
    listed = client.post(f"/storage/v1/object/list/{BUCKET}", json={"prefix": "videos"}).json()
    assert [(e["name"], e["id"] is None) for e in listed] == [("l", True)]
    files = client.post(f"/storage/v1/object/list/{BUCKET}", json={"prefix": "videos/l"})
    assert [e["name"] for e in files.json()] == ["raw.mp4"]
    gone = client.delete(f"{OBJ}/videos/l/raw.mp4")
    assert gone.json() == {"message": "Successfully deleted"}


def test_limits_mime_and_rls(seed: Seed, supa: SupabaseStandIn, wire: Any) -> None:
    seed.sql("insert into storage.buckets (id, name, file_size_limit, allowed_mime_types) "
             "values ('small', 'small', 10, '{video/*}')")
    client = wire()
    big = client.post("/storage/v1/object/small/a.mp4",
                      files={"file": ("a.mp4", b"x" * 11, "video/mp4")})
    assert (big.status_code, big.json()["statusCode"], big.json()["code"]) == (
        400, "413", "EntityTooLarge")
    text = client.post("/storage/v1/object/small/a.txt",
                       files={"file": ("a.txt", b"x", "text/plain")})
    assert (text.status_code, text.json()["statusCode"], text.json()["error"]) == (
        400, "415", "invalid_mime_type")
    anon = upload(wire(key=supa.anon_key), "a.mp4", b"x")
    assert anon.json() == {"statusCode": "403", "code": "AccessDenied", "error": "Unauthorized",
                           "message": "new row violates row-level security policy"}
    assert supa.writes == {}
    anon_list = wire(key=supa.anon_key).get("/storage/v1/bucket")
    assert anon_list.json() == []
    expired = wire(key=supa.make_key("service_role", expires_in=-5)).get("/storage/v1/bucket")
    assert (expired.status_code, expired.json()["statusCode"]) == (400, "403")


def test_buckets(seed: Seed, wire: Any) -> None:
    client = wire()
    made = client.post("/storage/v1/bucket", json={"id": "b2", "name": "b2", "public": False})
    assert made.json() == {"name": "b2"}
    dup = client.post("/storage/v1/bucket", json={"id": "b2", "name": "b2"})
    assert (dup.status_code, dup.json()["error"]) == (400, "Duplicate")
    assert client.get("/storage/v1/bucket/b2").json()["public"] is False
    assert client.get("/storage/v1/bucket/zz").json()["error"] == "Bucket not found"


def _meta(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def tus_create(client: Any, name: str, size: int, **headers: str) -> Any:
    return client.post("/storage/v1/upload/resumable", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(size), "x-upsert": "true",
        "Upload-Metadata": _meta(bucketName=BUCKET, objectName=name, contentType="video/mp4",
                                 cacheControl="3600"), **headers})


def tus_patch(client: Any, url: str, offset: int, data: bytes) -> Any:
    return client.patch(url, content=data, headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream"})


def test_tus_protocol(seed: Seed, supa: SupabaseStandIn, wire: Any) -> None:
    """201 + Location; 6 MiB chunks only (except the last); 409 on a wrong offset; the object
    appears only with the last byte; HEAD tells where to resume."""
    client = wire()
    data = bytes(range(256)) * (13 * MiB // 256)  # 13 MiB: two full chunks and a short one
    created = tus_create(client, "videos/big.mp4", len(data))
    assert created.status_code == 201
    url = created.headers["Location"]
    assert url.startswith(f"{supa.url}/storage/v1/upload/resumable/")
    odd = tus_patch(client, url, 0, data[:MiB])
    assert (odd.status_code, odd.headers["Content-Type"].split(";")[0]) == (400, "text/plain")
    first = tus_patch(client, url, 0, data[:6 * MiB])
    assert (first.status_code, first.headers["Upload-Offset"]) == (204, str(6 * MiB))
    conflict = tus_patch(client, url, 0, data[:6 * MiB])
    assert (conflict.status_code, conflict.text) == (409, "Upload-Offset conflict")
    head = client.head(url, headers={"Tus-Resumable": "1.0.0"})
    assert head.headers["Upload-Offset"] == str(6 * MiB)
    assert tus_patch(client, url, 6 * MiB, data[6 * MiB:12 * MiB]).status_code == 204
    assert client.get(f"{OBJ}/videos/big.mp4").json()["error"] == "not_found"  # not yet
    last = tus_patch(client, url, 12 * MiB, data[12 * MiB:])
    assert (last.status_code, last.headers["Tus-Complete"]) == (204, "1")
    assert client.get(f"{OBJ}/videos/big.mp4").content == data
    assert supa.writes[f"{BUCKET}/videos/big.mp4"] == 1
    assert supa.write_log[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert supa.tus_received[f"{BUCKET}/videos/big.mp4"] == len(data)


def test_tus_errors_are_plain_text_with_real_status(seed: Seed, supa: SupabaseStandIn,
                                                    wire: Any) -> None:
    client = wire()
    version = client.post("/storage/v1/upload/resumable", headers={"Tus-Resumable": "0.2"})
    assert version.status_code == 412
    nobucket = client.post("/storage/v1/upload/resumable", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "10",
        "Upload-Metadata": _meta(bucketName="nope", objectName="a.mp4")})
    assert (nobucket.status_code, nobucket.text) == (404, "Bucket not found")
    upload(client, "taken.mp4", b"x")
    taken = tus_create(client, "taken.mp4", 10, **{"x-upsert": "false"})
    assert (taken.status_code, taken.text) == (409, "The resource already exists")
    anon = tus_create(wire(key=supa.anon_key), "a.mp4", 10)
    assert (anon.status_code, anon.text) == (403, "new row violates row-level security policy")
    url = tus_create(client, "gone.mp4", 7 * MiB).headers["Location"]
    assert client.delete(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 204
    assert client.head(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 404
    stale = tus_create(client, "stale.mp4", 7 * MiB).headers["Location"]
    for upload_state in supa.uploads.values():
        upload_state.expires = time.time() - 1
    assert client.head(stale, headers={"Tus-Resumable": "1.0.0"}).status_code == 410
    assert supa.writes.get(f"{BUCKET}/gone.mp4") is None
