"""Test images made on the spot: a JPEG carrying GPS EXIF and an orientation, bombs, fakes."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112
LAT = (51.0, 30.0, 26.0)
"""The latitude written into the GPS tags (51°30'26" N: London)."""


def gps_jpeg(
    width: int = 600,
    height: int = 300,
    orientation: int = 6,
    colour: tuple[int, ...] = (200, 40, 40),
) -> bytes:
    """A JPEG with GPS position, camera make, a comment and an EXIF orientation (6: the
    stored pixels are to be turned 90° clockwise, so a 600x300 image shows 300x600)."""
    img = Image.new("RGB", (width, height), colour)
    img.paste((10, 10, 200), (0, 0, width // 4, height // 4))  # a corner to see orientation by
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x0131] = "secret-firmware"  # Software
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = LAT
    gps[3] = "W"
    gps[4] = (0.0, 7.0, 39.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), comment=b"taken at home", quality=90)
    return buf.getvalue()


def png(width: int = 300, height: int = 200, alpha: bool = True) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    img = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (0, 128, 0, 100)[: 4 if alpha else 3]
    )
    info = PngInfo()
    info.add_text("Author", "someone@example.test")
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def webp_with_exif(width: int = 400, height: int = 400) -> bytes:
    img = Image.new("RGB", (width, height), (1, 2, 3))
    exif = Image.Exif()
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "S"
    gps[2] = (33.0, 51.0, 0.0)
    buf = io.BytesIO()
    img.save(buf, "WEBP", exif=exif.tobytes(), xmp=b"<x:xmpmeta>where</x:xmpmeta>")
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A few hundred bytes declaring width x height pixels (2.5 gigapixels by default): what
    a decompression bomb looks like before it is decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "GIF")
    return buf.getvalue()
