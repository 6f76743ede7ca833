"""Image bytes from a request into an upright 8-bit RGB image, within the service's pixel limit.

The header is read first: an image declaring more than ``max_image_pixels`` pixels is refused before any
pixel is decoded (a decompression bomb is a few kilobytes that declare gigapixels). Decoding then follows
``data.images.load_image`` (EXIF orientation, alpha over white, 16-bit scaled): a served model sees what a
model loaded in Python sees.
"""

from __future__ import annotations

import io
import re
import warnings

from jupyter_avml.serving.errors import RequestError, bad_request


class _NamedBytes(io.BytesIO):
    """Bytes that name themselves in messages (``load_image`` says ``f"{path}: reason"``)."""

    def __init__(self, data: bytes, what: str):
        super().__init__(data)
        self.what = what

    def __str__(self) -> str:
        return self.what


def decode_image(data: bytes, what: str, max_pixels: int):
    """``data`` as a PIL RGB image; ``what`` names it in errors (``"the request body"``, ``"image 3"``).

    Raises
    ------
    RequestError
        400 ``empty_image`` / ``not_an_image`` / ``corrupt_image``; 413 ``image_too_large``.
    """
    from PIL import Image, UnidentifiedImageError

    from jupyter_avml.data.images import load_image
    from jupyter_avml.errors import DataError

    if not data:
        raise bad_request("empty_image", f"{what} is empty: send the bytes of an image file (JPEG, PNG, BMP, TIFF)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
        except UnidentifiedImageError:
            raise bad_request("not_an_image", f"{what} is not an image file ({len(data)} bytes that no image "
                                              f"format recognises; send JPEG, PNG, BMP or TIFF bytes)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # PIL refuses it before we see its size; its message has the pixel count.
            declared = re.search(r"\((\d+) pixels\)", str(exc))
            raise _too_large(what, f"it declares {declared.group(1)} pixels" if declared else str(exc),
                             max_pixels) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise bad_request("corrupt_image", f"{what}: truncated or corrupt image header ({exc})") from None
    if width * height > max_pixels:
        raise _too_large(what, f"it declares {width} x {height} = {width * height} pixels", max_pixels)
    try:
        return load_image(_NamedBytes(data, what))
    except DataError as exc:
        reason = str(exc)
        if "image too large" in reason:
            raise _too_large(what, reason, max_pixels) from None
        raise bad_request("corrupt_image", reason) from None


def _too_large(what: str, detail: str, max_pixels: int) -> RequestError:
    return RequestError(413, "image_too_large", f"{what} is too large to decode ({detail}); this service decodes at "
                                                f"most {max_pixels} pixels per image (--max-image-pixels)")
