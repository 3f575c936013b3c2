"""Photo uploads over the real gateway, Postgres, Redis and Ray: upload, strip, serve, attach to
posts and listings, expire; the S3 backend against a local S3-compatible server (moto)."""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import h3
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from PIL import Image

from cluster.config import Settings
from gateway.app import build_app
from gateway.context import SERVICES
from models.media import metadata_chunks
from tests import images
from tests.integration import admin_kit as ak
from tests.integration import market_kit as mk
from tests.integration.client import Api, User

pytestmark = pytest.mark.integration

HERE = (48.8566, 2.3522)  # Paris: away from the other tests' neighbourhoods


def _spot(settings: Settings, i: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(HERE[0], HERE[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 5 + 4 * i))[0])


def _auth(user: User | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}"} if user else {}


async def upload(
    api: Api, user: User | None, data: bytes, *, name: str = "file", declared: str = "image/jpeg"
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field(name, data, filename="photo.jpg", content_type=declared)
    async with api.http.post(api.base + "/api/v1/media", data=form, headers=_auth(user)) as resp:
        return resp.status, await resp.json()


async def fetch(
    api: Api, url: str, user: User | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, CIMultiDict[str]]:
    target = url if url.startswith("http") else api.base + url
    async with api.http.get(target, headers={**_auth(user), **(headers or {})}) as resp:
        return resp.status, await resp.read(), CIMultiDict(resp.headers)


async def _chunked_upload(api: Api, user: User, data: bytes) -> tuple[int, Any]:
    """A multipart upload sent with chunked transfer encoding (no Content-Length)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for at in range(0, len(data), 256 * 1024):
            yield data[at : at + 256 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**_auth(user), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with api.http.post(api.base + "/api/v1/media", data=body(), headers=headers) as resp:
        return resp.status, await resp.json()


async def _uploaded(api: Api, user: User, data: bytes | None = None) -> dict[str, Any]:
    status, body = await upload(api, user, data or images.gps_jpeg())
    assert status == 201, body
    return dict(body["media"])


def _no_metadata(data: bytes) -> None:
    assert metadata_chunks(data) == []
    img = Image.open(io.BytesIO(data))
    assert img.format == "WEBP" and not img.getexif()
    for marker in (b"Exif", b"GPS", b"SpyCam", b"taken at home"):
        assert marker not in data


async def test_upload_strips_gps_and_serves_variants_to_the_owner_only(
    api: Api, server: TestServer
) -> None:
    alice, bob = await api.signup("alice"), await api.signup("bob")
    media = await _uploaded(api, alice, images.gps_jpeg(2400, 1200, orientation=6))
    assert media["id"].startswith("m") and (media["width"], media["height"]) == (512, 1024)
    assert [v["size"] for v in media["variants"]] == [256, 1024]
    assert media["url"] == media["variants"][-1]["url"] == f"/media/{media['id']}/1024.webp"
    assert media["attached"] is False and media["expires_at"]
    pool = server.app[SERVICES].media._pool  # decoded in worker processes, not on the loop
    assert pool is not None and os.getpid() not in pool._processes

    for variant in media["variants"]:
        status, data, headers = await fetch(api, variant["url"], alice)
        assert status == 200 and headers["Content-Type"] == "image/webp"
        _no_metadata(data)  # the GPS position is gone from what anyone can download
        assert Image.open(io.BytesIO(data)).size == (variant["width"], variant["height"])
        assert headers["Cache-Control"].startswith("private")
        assert len(data) == variant["bytes"]
    # pending: nobody else sees it, by URL or by description
    for who in (bob, None):
        status, _, _ = await fetch(api, media["url"], who)
        assert status == 404
        status, body = await api.get(
            f"/api/v1/media/{media['id']}", who.access_token if who else None
        )
        assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await api.get(f"/api/v1/media/{media['id']}", alice.access_token)
    assert status == 200 and body["media"]["id"] == media["id"]


async def test_a_post_attaches_its_photos_which_become_public_and_cacheable(
    api: Api, settings: Settings
) -> None:
    alice = await api.signup("alice")
    media = await _uploaded(api, alice)
    ws = await api.connect(alice)
    here = _spot(settings, 0)
    post = (
        await ws.mutate(
            "post.create", {"text": "look", "lat": here[0], "lng": here[1], "media": [media["id"]]}
        )
    )["post"]
    assert post["media"] == [media["id"]]
    feed = await ws.ok("feed.get", {"lat": here[0], "lng": here[1], "sort": "newest"})
    assert [p["media"] for p in feed["items"] if p["id"] == post["id"]] == [[media["id"]]]
    await ws.close()

    status, data, headers = await fetch(api, media["url"])  # anonymous: it is public now
    assert status == 200
    _no_metadata(data)
    assert headers["Cache-Control"] == (
        f"public, max-age={settings.media_public_max_age_s}, immutable"
    )
    etag = headers["ETag"]
    assert etag.startswith('"') and len(etag) == 66
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    status, data, again = await fetch(api, media["url"], headers={"If-None-Match": etag})
    assert status == 304 and data == b"" and again["ETag"] == etag
    status, _, _ = await fetch(api, media["url"], headers={"If-None-Match": '"other", W/' + etag})
    assert status == 304
    status, _, _ = await fetch(api, media["url"], headers={"If-None-Match": '"other"'})
    assert status == 200
    status, body = await api.get(f"/api/v1/media/{media['id']}")
    assert (
        status == 200 and body["media"]["attached"] is True and body["media"]["expires_at"] is None
    )
    status, _, _ = await fetch(api, f"/media/{media['id']}/512.webp")
    assert status == 404


async def test_uploading_the_same_bytes_again_is_the_same_media(api: Api) -> None:
    alice, bob = await api.signup("alice"), await api.signup("bob")
    data = images.png()
    first, again = await _uploaded(api, alice, data), await _uploaded(api, alice, data)
    assert again["id"] == first["id"]
    theirs = await _uploaded(api, bob, data)  # another user's upload is their own media ...
    assert theirs["id"] != first["id"]
    _, a, ha = await fetch(api, first["url"], alice)
    _, b, hb = await fetch(api, theirs["url"], bob)
    assert a == b and ha["ETag"] == hb["ETag"]  # ... sharing the stored objects


async def test_bad_uploads_get_typed_errors_and_store_nothing(api: Api, settings: Settings) -> None:
    alice = await api.signup("alice")
    conn = await mk.db(settings)
    try:
        before = await conn.fetchval("SELECT count(*) FROM media")
        cases = [
            (images.gps_jpeg()[:400], 415, "not_an_image"),  # truncated
            (b"GIF89a" + b"\x00" * 100, 415, "not_an_image"),  # declared image/jpeg
            (images.gif(), 415, "not_an_image"),
            (b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>", 415, "not_an_image"),
            (images.png_bomb(), 413, "too_many_pixels"),
            (images.png_bomb(7000, 7000), 413, "too_many_pixels"),
        ]
        for data, status, code in cases:
            got, body = await upload(api, alice, data)
            assert (got, body["error"]["code"]) == (status, code), body
        limit = settings.media_max_upload_bytes
        got, body = await upload(api, alice, b"\xff\xd8\xff" + b"\x00" * limit)
        assert (got, body["error"]["code"]) == (413, "too_large")
        got, body = await upload(api, alice, images.png(), name="photo")
        assert (got, body["error"]["code"]) == (400, "bad_request")
        got, body = await upload(api, None, images.png())
        assert (got, body["error"]["code"]) == (401, "unauthorized")
        got, body = await api.post("/api/v1/media", {"file": "x"}, alice.access_token)
        assert (got, body["error"]["code"]) == (400, "bad_request")
        two = aiohttp.FormData()
        two.add_field("file", images.png(), filename="a.png")
        two.add_field("file", images.png(20, 20), filename="b.png")
        async with api.http.post(
            api.base + "/api/v1/media", data=two, headers=_auth(alice)
        ) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
        got, body = await _chunked_upload(api, alice, b"\x89PNG\r\n\x1a\n" + b"\x00" * limit)
        assert (got, body["error"]["code"]) == (413, "too_large")  # no Content-Length to go by
        assert await conn.fetchval("SELECT count(*) FROM media") == before
    finally:
        await conn.close()


async def test_posts_take_only_their_authors_live_uploads(api: Api, settings: Settings) -> None:
    alice, mallory = await api.signup("alice"), await api.signup("mallory")
    media = await _uploaded(api, alice)
    here = _spot(settings, 1)
    ws = await api.connect(mallory)
    where = {"lat": here[0], "lng": here[1]}
    theirs = await ws.request(
        "post.create", {"text": "mine now", **where, "media": [media["id"]]}, key="k1"
    )
    assert not theirs["ok"] and theirs["error"]["code"] == "forbidden"
    unknown = await ws.request(
        "post.create", {"text": "x", **where, "media": ["m" + "0" * 32]}, key="k2"
    )
    assert not unknown["ok"] and unknown["error"]["code"] == "not_found"
    malformed = await ws.request("post.create", {"text": "x", **where, "media": ["../x"]}, key="k3")
    assert not malformed["ok"] and malformed["error"]["code"] == "bad_request"
    mine = await _uploaded(api, mallory, images.png(50, 50))
    mixed = await ws.request(
        "post.create", {"text": "x", **where, "media": [mine["id"], media["id"]]}, key="k4"
    )
    assert mixed["error"]["code"] == "forbidden"
    feed = await ws.ok("feed.get", {**where, "sort": "newest"})
    assert feed["items"] == []  # nothing was posted
    await ws.close()
    for who, item in ((alice, media), (mallory, mine)):  # and nothing was attached
        status, body = await api.get(f"/api/v1/media/{item['id']}", who.access_token)
        assert status == 200 and body["media"]["attached"] is False


async def test_listings_take_the_vendor_users_uploads(api: Api, settings: Settings) -> None:
    vendor_user, _ = await mk.vendor(api, mk.spot(settings, 9), name="photoshop")
    other = await api.signup("other")
    photo = await _uploaded(api, vendor_user)
    stolen = await _uploaded(api, other, images.png(64, 64))
    listing = await mk.listing(api, vendor_user.access_token, images=[photo["id"], photo["id"]])
    assert listing["images"] == [photo["id"]]
    status, _, headers = await fetch(api, photo["url"])
    assert status == 200 and "immutable" in headers["Cache-Control"]
    body = {"title": "t", "category": "c", "price": 1, "images": [stolen["id"]]}
    status, out = await mk.rest(
        api, "POST", "/api/v1/vendor/listings", body, vendor_user.access_token
    )
    assert status == 403 and out["error"]["code"] == "forbidden"
    body["images"] = ["m" + "1" * 32]
    status, out = await mk.rest(
        api, "POST", "/api/v1/vendor/listings", body, vendor_user.access_token
    )
    assert status == 404 and out["error"]["code"] == "not_found"
    body["images"] = ["https://example.com/a.jpg"]
    status, out = await mk.rest(
        api, "POST", "/api/v1/vendor/listings", body, vendor_user.access_token
    )
    assert status == 400
    path = f"/api/v1/vendor/listings/{listing['id']}"
    status, out = await mk.rest(
        api, "PATCH", path, {"images": [stolen["id"]]}, vendor_user.access_token
    )
    assert status == 403
    second = await _uploaded(api, vendor_user, images.png(80, 80))
    status, out = await mk.rest(
        api, "PATCH", path, {"images": [second["id"]]}, vendor_user.access_token
    )
    assert status == 200 and out["listing"]["images"] == [second["id"]]


async def test_unused_uploads_expire_and_shared_objects_stay(
    api: Api, settings: Settings, server: TestServer
) -> None:
    services = server.app[SERVICES]
    alice, bob = await api.signup("alice"), await api.signup("bob")
    data = images.gps_jpeg(900, 900, orientation=1, colour=(1, 99, 7))
    gone, kept = await _uploaded(api, alice, data), await _uploaded(api, bob, data)
    other = await _uploaded(api, alice, images.png(33, 33))
    conn = await mk.db(settings)
    try:
        await conn.execute(
            "UPDATE media SET expires_at = now() - interval '1 second' WHERE id = ANY($1)",
            [gone["id"], other["id"]],
        )
        variants = await conn.fetchval(
            "SELECT variants::text FROM media WHERE id = $1", other["id"]
        )
        shas = {v["sha256"] for v in json.loads(variants)}
        swept = 0
        while (n := await services.media.sweep()) > 0:
            swept += n
        assert swept >= 2
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM media WHERE id = ANY($1)", [gone["id"], other["id"]]
            )
            == 0
        )
    finally:
        await conn.close()
    status, _, _ = await fetch(api, gone["url"], alice)
    assert status == 404
    status, data, _ = await fetch(api, kept["url"], bob)  # the same picture, bob's: still there
    assert status == 200
    for sha in shas:  # the other one's objects are deleted from the store
        assert await services.media.blobs.get(f"{sha}.webp") is None
    again = await _uploaded(api, alice, data)  # uploading it again works and is a new media
    assert again["id"] != gone["id"]
    async with api.http.get(api.base + "/metrics") as resp:
        metrics = await resp.text()
    swept_line = next(x for x in metrics.splitlines() if x.startswith("hl_media_swept "))
    assert float(swept_line.split()[1]) >= 2


async def test_the_owner_withdraws_an_unused_upload_only(
    api: Api, settings: Settings, server: TestServer
) -> None:
    alice, bob = await api.signup("alice"), await api.signup("bob")
    photo = await _uploaded(api, alice, images.gps_jpeg(500, 400, colour=(9, 8, 7)))
    used = await _uploaded(api, alice, images.png(70, 70))
    ws = await api.connect(alice)
    here = _spot(settings, 2)
    where = {"lat": here[0], "lng": here[1]}
    await ws.mutate("post.create", {"text": "x", **where, "media": [used["id"]]})
    await ws.close()
    conn = await mk.db(settings)
    try:
        query = "SELECT variants::text FROM media WHERE id = $1"
        shas = {v["sha256"] for v in json.loads(await conn.fetchval(query, photo["id"]))}
    finally:
        await conn.close()
    path = f"/api/v1/media/{photo['id']}"
    status, body = await mk.rest(api, "DELETE", path, None, bob.access_token)
    assert status == 404 and body["error"]["code"] == "not_found"  # not bob's
    used_path = f"/api/v1/media/{used['id']}"
    status, body = await mk.rest(api, "DELETE", used_path, None, alice.access_token)
    assert status == 409 and body["error"]["code"] == "conflict"  # a post shows it
    status, _, _ = await fetch(api, used["url"])
    assert status == 200
    status, body = await mk.rest(api, "DELETE", path, None, alice.access_token)
    assert status == 204
    status, body = await mk.rest(api, "DELETE", path, None, alice.access_token)
    assert status == 404
    status, _, _ = await fetch(api, photo["url"], alice)
    assert status == 404
    for sha in shas:  # its objects are gone from the store (no one else's picture)
        assert await server.app[SERVICES].media.blobs.get(f"{sha}.webp") is None


async def _sweep_until(services: Any, settings: Settings, check: Any) -> None:
    """Sweep (each sweep walks on through the attached rows) until ``check`` holds."""
    conn = await mk.db(settings)
    try:
        for _ in range(200):
            await services.media.sweep()
            if await check(conn):
                return
        raise AssertionError("the sweeper never got there")
    finally:
        await conn.close()


async def _state(conn: Any, media_id: str) -> str:
    row = await conn.fetchrow(
        "SELECT attached_at IS NOT NULL AS attached FROM media WHERE id = $1", media_id
    )
    return "gone" if row is None else ("attached" if row["attached"] else "pending")


async def test_photos_of_deleted_and_removed_posts_and_listings_stop_being_served(
    api: Api, settings: Settings, server: TestServer
) -> None:
    services = server.app[SERVICES]
    alice = await api.signup("alice")
    mod = await ak.staff(api, settings, "moderator")
    deleted, removed, shared = [
        await _uploaded(api, alice, images.png(40 + i, 40)) for i in range(3)
    ]
    ws = await api.connect(alice)
    here = _spot(settings, 3)
    where = {"lat": here[0], "lng": here[1]}
    first = (
        await ws.mutate(
            "post.create", {"text": "a", **where, "media": [deleted["id"], shared["id"]]}
        )
    )["post"]
    await ws.mutate("post.create", {"text": "b", **where, "media": [shared["id"]]})
    doomed = (await ws.mutate("post.create", {"text": "c", **where, "media": [removed["id"]]}))[
        "post"
    ]
    seller, _ = await mk.vendor(api, mk.spot(settings, 72), name="photo-seller")
    shop_photo = await _uploaded(api, seller, images.png(50, 51))
    item = await mk.listing(api, seller.access_token, images=[shop_photo["id"]])
    for media in (deleted, removed, shared, shop_photo):
        assert (await fetch(api, media["url"]))[0] == 200  # all shown, public

    assert (await ws.mutate("post.delete", {"post_id": first["id"]}))["deleted"] is True
    status, body = await api.post(
        "/api/v1/admin/content/remove",
        {"kind": "post", "id": doomed["id"], "reason": "spam"},
        token=mod.access_token,
    )
    assert status == 200, body
    path = f"/api/v1/vendor/listings/{item['id']}"
    assert (await mk.rest(api, "DELETE", path, None, seller.access_token))[0] in (200, 204)
    await ws.close()
    for media, owner in ((deleted, alice), (removed, alice), (shop_photo, seller)):
        status, _, _ = await fetch(api, media["url"])  # at once, before any sweep
        assert status == 404, media
        status, body = await api.get(f"/api/v1/media/{media['id']}", mod.access_token)
        assert status == 404 and body["error"]["code"] == "not_found"
        status, _, headers = await fetch(api, media["url"], owner)  # its owner still sees it
        assert status == 200 and headers["Cache-Control"].startswith("private")
    status, _, headers = await fetch(api, shared["url"])  # another live post still shows it
    assert status == 200 and "immutable" in headers["Cache-Control"]

    ids = [deleted["id"], removed["id"], shared["id"], shop_photo["id"]]
    conn = await mk.db(settings)
    try:  # past the settling time after attaching (what uses a photo may be committing)
        await conn.execute(
            "UPDATE media SET attached_at = now() - interval '1 hour' WHERE id = ANY($1)", ids
        )
        variants = await conn.fetchval("SELECT variants::text FROM media WHERE id = $1", ids[0])
        shas = {v["sha256"] for v in json.loads(variants)}
    finally:
        await conn.close()

    async def released(conn: Any) -> bool:
        states = [await _state(conn, i) for i in ids]
        return states == ["pending", "pending", "attached", "pending"]

    await _sweep_until(services, settings, released)
    conn = await mk.db(settings)
    try:  # a moderator restores the removed post (as a dismissed report does): shown again
        await conn.execute("UPDATE posts SET removed_at = NULL WHERE id = $1", doomed["id"])
        assert (await fetch(api, removed["url"]))[0] == 200
        await conn.execute(  # the grace runs out
            "UPDATE media SET expires_at = now() - interval '1 second' WHERE id = ANY($1)",
            [ids[0], ids[1], ids[3]],
        )
    finally:
        await conn.close()

    async def collected(conn: Any) -> bool:
        states = [await _state(conn, i) for i in ids]
        return states == ["gone", "attached", "attached", "gone"]

    await _sweep_until(services, settings, collected)
    for sha in shas:  # the deleted post's photo is gone from the store
        assert await services.media.blobs.get(f"{sha}.webp") is None
    assert (await fetch(api, deleted["url"], alice))[0] == 404
    assert (await fetch(api, removed["url"]))[0] == 200


# -- the S3 backend ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        moto.stop()


@pytest.fixture
async def s3_api(
    settings: Settings, s3_endpoint: str, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Api, Any]]:
    import boto3

    bucket = f"hl-media-{uuid.uuid4().hex[:8]}"
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **creds)
    client.create_bucket(Bucket=bucket)
    s3_settings = settings.model_copy(
        update={
            "media_backend": "s3",
            "media_s3_bucket": bucket,
            "media_s3_endpoint_url": s3_endpoint,
            "media_s3_access_key_id": "test",
            "media_s3_secret_access_key": "test",
            "media_base_url": "https://cdn.example.test",
        }
    )
    srv = TestServer(build_app(s3_settings), host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        yield Api(str(srv.make_url("")), http), (client, bucket, srv)
    finally:
        await srv.close()


async def test_s3_backend_stores_serves_and_collects(s3_api: tuple[Api, Any]) -> None:
    api, (client, bucket, srv) = s3_api
    alice = await api.signup("alice")
    media = await _uploaded(api, alice, images.gps_jpeg(640, 480, colour=(3, 2, 1)))  # its own
    assert media["url"] == f"https://cdn.example.test/media/{media['id']}/1024.webp"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert len(keys) == 2 and all(k.startswith("media/") and k.endswith(".webp") for k in keys)
    stored = client.get_object(Bucket=bucket, Key=keys[0])
    assert stored["ContentType"] == "image/webp"
    _no_metadata(stored["Body"].read())
    for variant in media["variants"]:  # the gateway is the CDN's origin
        path = variant["url"].removeprefix("https://cdn.example.test")
        status, data, headers = await fetch(api, path, alice)
        assert status == 200 and headers["ETag"].strip('"') in "".join(keys)
        _no_metadata(data)
    conn = await mk.db(srv.app[SERVICES].settings)
    try:
        await conn.execute(
            "UPDATE media SET expires_at = now() - interval '1 second' WHERE id = $1", media["id"]
        )
    finally:
        await conn.close()
    while await srv.app[SERVICES].media.sweep() > 0:
        pass
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    status, _, _ = await fetch(api, media["url"].removeprefix("https://cdn.example.test"), alice)
    assert status == 404


# -- the benchmark, briefly ----------------------------------------------------------------------
async def test_bench_media_runs_both_modes(server: TestServer) -> None:
    """A smoke run of bench/media.py: figures are produced, not asserted (docs/media.md)."""
    from bench import media as bench

    photos = bench.make_photos(3, 640, 480)
    assert len(set(photos)) == 3
    piped = (await bench.run_pipeline(photos, concurrency=2, workers=1)).report()
    assert piped["uploads"] == 3 and piped["uploads_per_s"] > 0
    assert piped["cpu_s_per_upload"] is not None and piped["cpu_s_per_upload"] > 0
    sent = await bench.run_http(str(server.make_url("")).rstrip("/"), photos, 2, os.getpid())
    report = sent.report()
    assert report["mode"] == "http" and report["uploads"] == 3
    assert report["cpu_s_per_upload"] is not None and report["cpu_s_per_upload"] > 0


async def test_a_second_gateway_process_decodes_and_the_first_serves(api: Api, api2: Api) -> None:
    """``python -m cluster.cli gateway``, as deployments run it: its spawned workers import
    that main module first, and the photo it stores is served by every gateway (one store)."""
    alice = await api.signup("alice")
    status, body = await upload(api2, alice, images.gps_jpeg(800, 600, colour=(4, 5, 6)))
    assert status == 201, body
    media = body["media"]
    for base in (api2, api):
        status, data, _ = await fetch(base, media["url"], alice)
        assert status == 200
        _no_metadata(data)
