"""Photo processing without a server (models/media.py): sniffing, the bomb guard, orientation,
metadata stripping, variants; and the local blob store."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from models import media
from models.media import ImageLimits, NotAnImage, TooManyPixels, metadata_chunks, process, sniff
from store.media_blobs import LocalBlobs, object_name
from tests import images

LIMITS = ImageLimits(max_pixels=40_000_000, max_side_px=12_000)


@pytest.fixture(autouse=True, scope="module")
def _pillow_limit() -> None:
    media.init_worker(LIMITS.max_pixels)  # what a worker process does once


def test_sniff_reads_the_content_not_the_name() -> None:
    assert sniff(images.gps_jpeg()) == "jpeg"
    assert sniff(images.png()) == "png"
    assert sniff(images.webp_with_exif()) == "webp"
    assert sniff(images.gif()) is None
    assert sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff(b"") is None


def _opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_gps_and_every_other_tag_are_gone_from_every_variant() -> None:
    source = images.gps_jpeg()
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(images.GPS_IFD)  # it has GPS
    done = process(source, LIMITS)
    assert [v.size for v in done.variants] == [256, 1024]
    for variant in done.variants:
        assert metadata_chunks(variant.data) == []
        img = _opened(variant.data)
        assert img.format == "WEBP"
        assert not img.getexif(), "no EXIF at all"
        assert not {"exif", "xmp", "icc_profile", "comment"} & img.info.keys()
        for marker in (b"Exif", b"GPS", b"SpyCam", b"secret-firmware", b"taken at home"):
            assert marker not in variant.data


def test_auto_oriented_and_never_enlarged() -> None:
    done = process(images.gps_jpeg(600, 300, orientation=6), LIMITS)
    assert (done.width, done.height) == (300, 600)  # turned upright
    small, large = done.variants
    assert (small.width, small.height) == (128, 256)
    assert (large.width, large.height) == (300, 600)  # 1024 would be enlarging
    img = _opened(large.data).convert("RGB")
    # the blue corner was top-left of the stored pixels; turned 90° clockwise it is top-right
    assert img.getpixel((295, 5))[2] > 150 and img.getpixel((5, 5))[2] < 100


def test_big_photo_fits_1024_and_variants_are_content_addressed() -> None:
    done = process(images.gps_jpeg(3000, 2000, orientation=1), LIMITS)
    large = done.variants[-1]
    assert (large.width, large.height) == (1024, 683)
    again = process(images.gps_jpeg(3000, 2000, orientation=1), LIMITS)
    assert [v.sha256 for v in again.variants] == [v.sha256 for v in done.variants]
    assert large.sha256 == media.sha256_hex(large.data)


def test_png_keeps_alpha_loses_text_and_webp_loses_exif_and_xmp() -> None:
    done = process(images.png(), LIMITS)
    assert _opened(done.variants[0].data).mode == "RGBA"
    assert b"someone@example.test" not in done.variants[0].data
    done = process(images.webp_with_exif(), LIMITS)
    for variant in done.variants:
        assert metadata_chunks(variant.data) == []
        assert b"where" not in variant.data


def test_an_icc_profile_is_applied_then_dropped() -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(buf, "JPEG", icc_profile=profile)
    done = process(buf.getvalue(), LIMITS)
    assert "icc_profile" not in _opened(done.variants[0].data).info
    assert metadata_chunks(done.variants[0].data) == []


def test_bombs_are_refused_before_decoding() -> None:
    with pytest.raises(TooManyPixels):
        process(images.png_bomb(), LIMITS)  # Pillow's own guard (over twice the limit)
    with pytest.raises(TooManyPixels):
        process(images.png_bomb(7000, 7000), LIMITS)  # 49 Mpx: ours (Pillow only warns)
    with pytest.raises(TooManyPixels):
        process(images.png_bomb(13_000, 100), LIMITS)  # a side over the limit
    assert TooManyPixels.http_status == 413


def test_not_images_are_refused_whatever_they_claim() -> None:
    jpeg = images.gps_jpeg(1200, 900)
    for data in (b"hello", images.gif(), b"\xff\xd8\xff" + b"junk" * 100, jpeg[: len(jpeg) // 2]):
        with pytest.raises(NotAnImage):
            process(data, LIMITS)
    png = images.png()
    with pytest.raises(NotAnImage):  # a PNG signature on a JPEG body: only PNG is tried
        process(png[:8] + jpeg, LIMITS)
    assert NotAnImage.code == "not_an_image" and NotAnImage.http_status == 415


def test_metadata_chunks_sees_what_a_webp_carries() -> None:
    raw = images.webp_with_exif()
    assert {"EXIF", "XMP "} <= set(metadata_chunks(raw))
    assert metadata_chunks(b"not a webp") == ["<not a webp>"]


def test_media_ids_are_long_and_random() -> None:
    import re

    ids = {media.new_media_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.match(media.MEDIA_ID_PATTERN, i) for i in ids)


def test_local_blobs(tmp_path: Path) -> None:
    async def run() -> None:
        blobs = LocalBlobs(tmp_path / "media")
        name = object_name("ab" * 32)
        assert await blobs.get(name) is None
        await blobs.put(name, b"one", "image/webp")
        await blobs.put(name, b"one", "image/webp")  # the same name is the same bytes
        assert await blobs.get(name) == b"one"
        assert (tmp_path / "media" / "ab" / name).is_file()
        await blobs.delete(name)
        await blobs.delete(name)  # deleting a missing object is fine
        assert await blobs.get(name) is None
        with pytest.raises(ValueError):
            await blobs.get("../../etc/passwd")

    asyncio.run(run())


def test_a_worker_over_its_memory_cap_refuses_the_image_not_the_gateway() -> None:
    """36 Mpx is under the pixel limits, but decoding it takes ~100 MB: over a 40 MB cap."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    buf = io.BytesIO()
    Image.new("RGB", (6000, 6000), (5, 6, 7)).save(buf, "PNG")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, spawn, media.init_worker, (LIMITS.max_pixels, 40)) as pool:
        assert pool.submit(process, images.png(40, 40), LIMITS).result().variants  # small: fine
        with pytest.raises(TooManyPixels, match="memory"):
            pool.submit(process, buf.getvalue(), LIMITS).result()
        assert pool.submit(process, images.png(40, 40), LIMITS).result().variants  # still up
