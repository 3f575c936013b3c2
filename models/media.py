"""Photo uploads: what an accepted image is, and how an upload becomes one (pure, no I/O).

``process`` takes the uploaded bytes and returns the WebP variants that are all we keep:
- the type is **sniffed** from the first bytes (JPEG, PNG or WebP); the declared type and the
  file name are never asked, and Pillow is told to try only the sniffed format;
- a **decompression bomb** is refused before any pixel is decoded: Pillow's
  ``MAX_IMAGE_PIXELS`` (its warning made an error) and our own limits on pixels and on the
  longest side, both read from the header; a JPEG is decoded at a reduced scale (``draft``)
  when its variants are smaller than it;
- it is **auto-oriented** by its EXIF orientation, converted to sRGB if it carries a colour
  profile, and copied into a fresh image, so **no metadata survives**: no EXIF (GPS above all),
  no XMP, no ICC profile, no text chunks. Each variant is checked again after encoding
  (``metadata_chunks``): a WebP holding anything but pixels is never returned;
- it is resized (never enlarged) to fit each of ``VARIANT_SIZES`` and encoded as WebP, each
  variant named by the sha256 of its bytes (content-addressed storage).

It runs in a worker process of the gateway (services/media.py), never on the event loop
(rule 6); the worker calls ``init_worker`` once.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import warnings
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from models.errors import AppError, BadRequest, TooLarge

VARIANT_SIZES: Final = (256, 1024)
"""Each variant fits a square of this many pixels (the longest side; never enlarged)."""

_MAGIC: Final = (
    ("jpeg", b"\xff\xd8\xff", 0),
    ("png", b"\x89PNG\r\n\x1a\n", 0),
)
_PIL_FORMAT: Final = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_PIXEL_CHUNKS: Final = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH"})
_SRGB: Final = ImageCms.createProfile("sRGB")

MEDIA_ID_PATTERN: Final = r"^m[0-9a-z]{32}$"
"""A media id: ``m`` and 32 base32 characters (160 random bits: the id is unguessable)."""

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_media_id() -> str:
    return "m" + "".join(secrets.choice(_ALPHABET) for _ in range(32))


class NotAnImage(AppError):
    """The bytes are not a JPEG, PNG or WebP we can decode (whatever they were declared as)."""

    code = "not_an_image"
    http_status = 415


class TooManyPixels(TooLarge):
    """The decompression-bomb guard: the header declares more pixels than we will decode."""

    code = "too_many_pixels"


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an upload may be: ``max_pixels`` (width × height), ``max_side_px``, WebP quality."""

    max_pixels: int
    max_side_px: int
    quality: int = 80
    sizes: tuple[int, ...] = VARIANT_SIZES


@dataclass(frozen=True, slots=True)
class Variant:
    """One stored rendition: WebP bytes fitting ``size`` px, named by their sha256."""

    size: int
    width: int
    height: int
    data: bytes
    sha256: str

    def meta(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "bytes": len(self.data),
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class Processed:
    """An accepted upload: its sniffed format, its oriented size and its variants."""

    format: str
    width: int
    height: int
    variants: tuple[Variant, ...]


def sniff(data: bytes) -> str | None:
    """The format the bytes are, from their signature: "jpeg", "png", "webp" or None."""
    for name, magic, at in _MAGIC:
        if data[at : at + len(magic)] == magic:
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def init_worker(max_pixels: int, memory_mb: int = 0) -> None:
    """Once per worker process: Pillow's own bomb limit (it errors at twice this, and warns
    above it; ``_open`` makes the warning an error too) and, with ``memory_mb``, a cap on the
    address space the worker may add to what it has now, i.e. on what decoding may take (a
    decode the checks let through fails with MemoryError here, not in the gateway). Relative,
    because a spawned worker first imports its parent's main module, whatever that weighs."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    if memory_mb > 0:
        import resource

        now = _address_space_bytes()
        if now is None:
            return  # not Linux: no cap rather than a wrong one
        limit = now + memory_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space_bytes() -> int | None:
    """This process's virtual memory size (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process(data: bytes, limits: ImageLimits) -> Processed:
    """The variants of an upload, or ``NotAnImage`` / ``TooManyPixels``."""
    fmt = sniff(data)
    if fmt is None:
        raise NotAnImage("not a JPEG, PNG or WebP image (judged by its content)")
    img = _open(data, fmt, limits)
    try:
        clean = _clean(img, fmt, max(limits.sizes))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt pixels
        raise NotAnImage(f"the {fmt} image cannot be decoded") from exc
    except MemoryError as exc:
        raise TooManyPixels("the image needs too much memory to decode") from exc
    finally:
        img.close()
    variants = tuple(_variant(clean, size, limits.quality) for size in sorted(limits.sizes))
    return Processed(fmt, clean.width, clean.height, variants)


def _open(data: bytes, fmt: str, limits: ImageLimits) -> Image.Image:
    """Open (header only) as the sniffed format, refusing bombs before decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise TooManyPixels(f"more than {limits.max_pixels} pixels") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            raise NotAnImage(f"a {fmt} signature but not a readable {fmt} image") from exc
    width, height = img.size
    if width < 1 or height < 1:
        img.close()
        raise NotAnImage("the image has no pixels")
    if width * height > limits.max_pixels or max(width, height) > limits.max_side_px:
        img.close()
        raise TooManyPixels(
            f"{width}x{height} is over the limit ({limits.max_pixels} pixels,"
            f" {limits.max_side_px} px a side)",
            max_pixels=limits.max_pixels,
            max_side_px=limits.max_side_px,
        )
    return img


def _clean(img: Image.Image, fmt: str, largest: int) -> Image.Image:
    """Decoded, oriented, sRGB, in RGB or RGBA, in a fresh image with no metadata at all."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # an animation keeps its first frame
    if fmt == "jpeg":
        img.draft("RGB", (largest, largest))  # decode at 1/2, 1/4, 1/8 scale when enough
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img.load()
    oriented = ImageOps.exif_transpose(img) or img
    icc = img.info.get("icc_profile")
    alpha = oriented.mode in ("RGBA", "LA", "PA") or (
        oriented.mode == "P" and "transparency" in oriented.info
    )
    mode = "RGBA" if alpha else "RGB"
    pixels = oriented.convert(mode)
    if icc:
        pixels = _to_srgb(pixels, icc, mode)
    pixels.thumbnail((largest, largest), Image.Resampling.LANCZOS)  # never enlarges
    # A fresh image: nothing of the upload's info (exif, xmp, icc_profile, text) comes along.
    return Image.frombytes(mode, pixels.size, pixels.tobytes())


def _to_srgb(img: Image.Image, icc: bytes, mode: str) -> Image.Image:
    """Colours as the embedded profile meant them, in sRGB; the profile itself is dropped."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(img, source, _SRGB, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img  # a broken or unusual profile: keep the pixels as they are
    return out if out is not None else img


def _variant(img: Image.Image, size: int, quality: int) -> Variant:
    copy = img.copy()
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    copy.save(buf, "WEBP", quality=quality, method=4)
    data = buf.getvalue()
    extra = metadata_chunks(data)
    if extra:  # cannot happen with a fresh image; never store one that says otherwise
        raise BadRequest(f"internal: metadata chunks {extra} in an encoded variant")
    return Variant(size, copy.width, copy.height, data, sha256_hex(data))


def metadata_chunks(webp: bytes) -> list[str]:
    """The RIFF chunks of a WebP file that are not pixels (EXIF, XMP, ICCP, ...)."""
    if webp[:4] != b"RIFF" or webp[8:12] != b"WEBP":
        return ["<not a webp>"]
    found, at = [], 12
    while at + 8 <= len(webp):
        tag = webp[at : at + 4]
        length = int.from_bytes(webp[at + 4 : at + 8], "little")
        if tag not in _PIXEL_CHUNKS:
            found.append(tag.decode("latin-1"))
        at += 8 + length + (length & 1)
    return found


def clean_ids(ids: list[str] | tuple[str, ...]) -> list[str]:
    """Media ids in their given order without repeats (a post showing one photo twice is one
    reference)."""
    return list(dict.fromkeys(ids))
