"""Decoding images into what the models expect: 8-bit RGB, upright.

``load_image`` returns a ``PIL.Image.Image`` in mode ``"RGB"`` with the EXIF orientation applied:

- RGB: returned as decoded (no copy, no EXIF work when the file has no EXIF block);
- grayscale (``1``, ``L``), palette without transparency (``P``), ``CMYK``, ``YCbCr``: PIL's conversion;
- with transparency (``LA``, ``La``, ``RGBA``, ``RGBa``, ``PA``, ``P`` with a transparent index or a
  ``transparency`` entry in ``L``/``RGB``): composited over WHITE. Transparent pixels carry no image content,
  and exported product/object images are usually drawn on white; simply dropping the alpha channel would
  show whatever color the encoder left there (often black);
- 16-bit (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): scaled from [0, 65535] to [0, 255]
  (``round(v / 257)``, so 65535 -> 255 and 257*k -> k), never clipped;
- 32-bit integer ``I``: values already in [0, 255] are kept; values in [0, 65535] are 16-bit data (PIL
  decodes 16-bit files into ``I`` in some paths) and are scaled as above; anything else (negative, larger)
  is stretched linearly from [min, max] to [0, 255];
- 32-bit float ``F``: values in [0, 1] are scaled by 255; values in [0, 255] are kept (rounded); anything
  else is stretched from [min, max]; NaN becomes 0.

``image_size`` reads only the header. ``check_image`` fully decodes (a truncated file is found only then)
and returns a short reason instead of raising; it also refuses files whose format is not one of the spec's
(JPEG, PNG, BMP, TIFF: ``SPEC_FORMATS``), as ``image_details.format`` does, so a GIF or WebP file is refused by
validation whatever its name. ``load_image`` itself decodes whatever PIL reads (inference takes any image).

``image_from_array`` turns an in-memory array (H x W, or H x W x 1/3/4) into the same 8-bit RGB, by the same
rules: ``uint8`` as is; other integers kept in [0, 255] or scaled from [0, 65535]; floats in [0, 1] scaled by
255, floats in [0, 255] rounded; anything else (NaN, negative or larger values) refused with the range found,
never cast to black.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from jupyter_avml.errors import DataError

EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255)

SPEC_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "DIB", "TIFF"})
"""PIL format names of the spec's image formats (jpg, jpeg, jpe, jfif, png, bmp, tif, tiff; MPO is the JPEG
that cameras write with a preview inside)."""


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_INFO_KEYS = ("exif", "xmp", "XML:com.adobe.xmp")


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent). Cheap when the file has no EXIF block."""
    # getexif() parses the EXIF block; skip it when there is none. For PNG, asking getexif() without an
    # "exif" entry would force a full decode (the eXIf chunk may follow the pixels), which image_size avoids.
    info = im.info
    if "exif" not in info and "xmp" not in info and "XML:com.adobe.xmp" not in info \
            and im.format not in ("TIFF", "MPO"):
        return 1
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block must not make a readable image unusable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        if "transparency" in im.info:
            return _over_white(im.convert("RGBA"))
        return im
    if mode in _ALPHA_MODES or (mode in ("P", "L") and "transparency" in im.info):
        return _over_white(im.convert("RGBA"))
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return _high_depth_to_rgb(im)
    try:
        return im.convert("RGB")
    except ValueError as exc:  # e.g. LAB: PIL has no conversion to RGB for it
        raise _UnsupportedMode(f"unsupported image mode {mode}: {exc}") from None


class _UnsupportedMode(Exception):
    """The image decodes but its mode has no conversion to RGB (not a ValueError: that means a corrupt file)."""


def _over_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    import numpy as np

    mode = im.mode
    if mode in _SIXTEEN_BIT:
        values = np.asarray(im).astype(np.uint32)
        out = (values + 128) // 257
    elif mode == "I":
        values = np.asarray(im).astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low >= 0 and high <= 255:
            out = values
        elif low >= 0 and high <= 65535:
            out = (values + 128) // 257
        else:
            out = _stretch(values.astype(np.float64), low, high)
    else:  # "F"
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0.0 and high <= 1.0:
            out = np.rint(values * 255.0)
        elif low >= 0.0 and high <= 255.0:
            out = np.rint(values)
        else:
            out = _stretch(values, low, high)
    gray = np.ascontiguousarray(out, dtype=np.uint8)
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))


def _stretch(values, low: float, high: float):
    import numpy as np

    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low)))


def load_image(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image (see the module docstring for each mode).

    Raises
    ------
    DataError
        naming the file when it is missing, empty, not an image, or truncated/corrupt.
    """
    try:
        im = Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: {_open_reason(path, exc)}") from None
    try:
        with im:
            im.load()
            orientation = _orientation(im)
            out = _to_rgb(im)
    except _UnsupportedMode as exc:
        raise DataError(f"{path}: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: {_decode_reason(exc)}") from None
    if orientation != 1:
        # Only rotated files pay for the transpose. The orientation tags are dropped from the result so that a
        # caller applying ImageOps.exif_transpose again does not rotate twice.
        out = out.transpose(_TRANSPOSE[orientation])
        for key in _ORIENTATION_INFO_KEYS:
            out.info.pop(key, None)
    return out


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` as the image will be seen (after EXIF orientation), from the header only.

    Raises
    ------
    DataError
        naming the file when it cannot be opened as an image.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            if _orientation(im) in _SWAPS_AXES:
                return height, width
            return width, height
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: {_open_reason(path, exc)}") from None


def check_image(path: str | os.PathLike) -> str | None:
    """None when ``path`` decodes completely, else a short reason.

    Reasons: ``"file not found"``, ``"not a file (a folder)"``, ``"file is empty (0 bytes)"``,
    ``"not an image file"``, ``"permission denied"``, ``"image too large: ..."``,
    ``"truncated or corrupt image: ..."``.
    """
    return inspect_image(path)[0]


def inspect_image(path: str | os.PathLike) -> tuple[str | None, tuple[int, int] | None]:
    """``(reason, size)``: as ``check_image``, plus ``(width, height)`` after EXIF orientation when decodable.

    One open and one decode per file: validation uses this to check decoding and ``image_details`` at once.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "file not found", None
    except PermissionError:
        return "permission denied", None
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}", None
    if stat.S_ISDIR(info.st_mode):
        return "not a file (a folder)", None
    if info.st_size == 0:
        return "file is empty (0 bytes)", None
    try:
        im = Image.open(path)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return _open_reason(path, exc), None
    if im.format not in SPEC_FORMATS:
        im.close()
        return (f"{im.format or 'this'} images are not one of the spec's formats (jpg, jpeg, png, jpe, jfif, bmp, "
                f"tif, tiff); convert it, e.g. to PNG"), None
    try:
        with im:
            im.load()
            width, height = im.size
            if _orientation(im) in _SWAPS_AXES:
                width, height = height, width
    except Image.DecompressionBombError as exc:
        return f"image too large: {exc}", None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return _decode_reason(exc), None
    return None, (width, height)


def image_from_array(array) -> Image.Image:
    """An upright 8-bit RGB image from an H x W or H x W x C (C = 1, 3 or 4) array (rules in the module docstring).

    Raises
    ------
    DataError
        for another shape, a dtype that is not numbers, or values outside the ranges above (the message
        gives the range found and what to do).
    """
    import numpy as np

    values = np.asarray(array)
    shape = values.shape
    if values.ndim == 3 and shape[2] == 1:
        values = values[:, :, 0]
    if not (values.ndim == 2 or (values.ndim == 3 and shape[2] in (3, 4))) or 0 in shape:
        raise DataError(f"an image array must be H x W, or H x W x 1, 3 or 4 channels, got shape {shape}")
    kind = values.dtype.kind
    if kind == "b":
        values = values.astype(np.uint8) * 255
    elif kind in "iu" and values.dtype != np.uint8:
        low, high = int(values.min()), int(values.max())
        if low >= 0 and high <= 255:
            values = values.astype(np.uint8)
        elif low >= 0 and high <= 65535:
            values = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
        else:
            raise DataError(f"an integer image array must hold values in [0, 255] (or 16-bit [0, 65535]), got "
                            f"values in [{low}, {high}]")
    elif kind == "f":
        if not np.isfinite(values).all():
            raise DataError("a float image array holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:
            values = np.rint(values * 255.0).astype(np.uint8)
        elif low >= 0.0 and high <= 255.0:
            values = np.rint(values).astype(np.uint8)
        else:
            raise DataError(f"a float image array must hold values in [0, 1] (or [0, 255]), got values in "
                            f"[{low:g}, {high:g}]; scale it first")
    elif kind != "u":
        raise DataError(f"an image array must hold numbers, got dtype {values.dtype}")
    values = np.ascontiguousarray(values)
    if values.ndim == 2:
        return Image.fromarray(values, "L").convert("RGB")
    if values.shape[2] == 4:
        return _over_white(Image.fromarray(values, "RGBA"))
    return Image.fromarray(values, "RGB")


def _open_reason(path, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError) or (isinstance(exc, OSError) and Path(path).is_dir()):
        return "not a file (a folder)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, Image.DecompressionBombError):
        return f"image too large: {exc}"
    if isinstance(exc, UnidentifiedImageError):
        try:
            if os.path.getsize(path) == 0:
                return "file is empty (0 bytes)"
        except OSError:
            pass
        return "not an image file"
    return _decode_reason(exc)


def _decode_reason(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"image too large: {exc}"
    return f"truncated or corrupt image: {exc}"
