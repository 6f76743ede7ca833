"""Image decoding: every mode becomes 8-bit RGB with the documented pixel values; EXIF orientation; reasons."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from jupyter_avml.data.images import check_image, image_from_array, image_size, inspect_image, load_image
from jupyter_avml.errors import DataError


def _pixels(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    return np.asarray(im)


def _save(tmp_path, im: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    im.save(path, **kwargs)
    return path


def test_rgb_is_returned_as_decoded(tmp_path):
    data = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    path = _save(tmp_path, Image.fromarray(data), "rgb.png")
    out = load_image(path)
    assert out.size == (6, 4)
    assert np.array_equal(_pixels(out), data)
    assert np.array_equal(_pixels(out), np.asarray(Image.open(path).convert("RGB")))


def test_rgb_jpeg_matches_plain_pil(tmp_path):
    rng = np.random.default_rng(0)
    path = _save(tmp_path, Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)), "x.jpg")
    assert np.array_equal(_pixels(load_image(path)), np.asarray(Image.open(path).convert("RGB")))


def test_grayscale_l(tmp_path):
    im = Image.new("L", (3, 2), 100)
    im.putpixel((2, 1), 7)
    px = _pixels(load_image(_save(tmp_path, im, "l.png")))
    assert px.shape == (2, 3, 3)
    assert px[0, 0].tolist() == [100, 100, 100]
    assert px[1, 2].tolist() == [7, 7, 7]


def test_bilevel_1(tmp_path):
    im = Image.new("1", (2, 1), 0)
    im.putpixel((1, 0), 1)
    px = _pixels(load_image(_save(tmp_path, im, "b.png")))
    assert px[0, 0].tolist() == [0, 0, 0] and px[0, 1].tolist() == [255, 255, 255]


def test_la_is_composited_on_white(tmp_path):
    im = Image.new("LA", (3, 1))
    im.putpixel((0, 0), (100, 255))   # opaque
    im.putpixel((1, 0), (100, 0))     # fully transparent -> white
    im.putpixel((2, 0), (0, 128))     # half: 0 * 128/255 + 255 * 127/255 = 127
    px = _pixels(load_image(_save(tmp_path, im, "la.png")))
    assert px[0, 0].tolist() == [100, 100, 100]
    assert px[0, 1].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 1 for v in px[0, 2].tolist())


def test_rgba_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (2, 1))
    im.putpixel((0, 0), (10, 20, 30, 255))
    im.putpixel((1, 0), (10, 20, 30, 0))
    px = _pixels(load_image(_save(tmp_path, im, "rgba.png")))
    assert px[0, 0].tolist() == [10, 20, 30]
    assert px[0, 1].tolist() == [255, 255, 255]


def test_palette(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 200, 10, 20] + [0] * (256 * 3 - 6))
    im.putpixel((0, 0), 1)
    im.putpixel((1, 0), 0)
    path = _save(tmp_path, im, "p.png")
    assert Image.open(path).mode == "P"
    px = _pixels(load_image(path))
    assert px[0, 0].tolist() == [200, 10, 20]
    assert px[0, 1].tolist() == [0, 0, 0]


def test_palette_with_transparent_index(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 200, 10, 20] + [0] * (256 * 3 - 6))
    im.putpixel((0, 0), 1)
    im.putpixel((1, 0), 0)
    path = _save(tmp_path, im, "pt.png", transparency=0)
    reopened = Image.open(path)
    assert reopened.mode == "P" and "transparency" in reopened.info
    px = _pixels(load_image(path))
    assert px[0, 0].tolist() == [200, 10, 20]
    assert px[0, 1].tolist() == [255, 255, 255]  # the transparent index becomes white, not black


def test_cmyk(tmp_path):
    im = Image.new("CMYK", (3, 1))
    im.putpixel((0, 0), (0, 0, 0, 0))        # paper: white
    im.putpixel((1, 0), (255, 0, 0, 0))      # cyan
    im.putpixel((2, 0), (0, 0, 0, 255))      # black
    px = _pixels(load_image(_save(tmp_path, im, "cmyk.tiff")))
    assert px[0, 0].tolist() == [255, 255, 255]
    assert px[0, 1].tolist() == [0, 255, 255]
    assert px[0, 2].tolist() == [0, 0, 0]


@pytest.mark.parametrize("mode,name", [("I;16", "g16.png"), ("I;16", "g16.tiff"), ("I;16B", "g16b.tiff")])
def test_sixteen_bit_is_scaled_not_clipped(tmp_path, mode, name):
    im = Image.new(mode, (4, 1))
    for x, value in enumerate([0, 257 * 100, 65535, 1000]):
        im.putpixel((x, 0), value)
    path = _save(tmp_path, im, name)
    assert Image.open(path).mode == mode
    px = _pixels(load_image(path))
    assert px[0, :, 0].tolist() == [0, 100, 255, 4]  # round(1000 / 257) = 4; clipping would give 255
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()


def test_thirty_two_bit_integer(tmp_path):
    wide = Image.new("I", (3, 1))
    for x, value in enumerate([0, 257 * 50, 65535]):
        wide.putpixel((x, 0), value)
    px = _pixels(load_image(_save(tmp_path, wide, "i16range.tiff")))
    assert px[0, :, 0].tolist() == [0, 50, 255]  # 16-bit data held in mode I

    small = Image.new("I", (2, 1))
    small.putpixel((0, 0), 7)
    small.putpixel((1, 0), 200)
    px = _pixels(load_image(_save(tmp_path, small, "i8range.tiff")))
    assert px[0, :, 0].tolist() == [7, 200]  # already 8-bit values: kept

    signed = Image.new("I", (3, 1))
    for x, value in enumerate([-1000, 0, 1000]):
        signed.putpixel((x, 0), value)
    px = _pixels(load_image(_save(tmp_path, signed, "signed.tiff")))
    assert px[0, :, 0].tolist() == [0, 128, 255]  # stretched from [min, max]


def test_float(tmp_path):
    unit = Image.new("F", (3, 1))
    for x, value in enumerate([0.0, 0.5, 1.0]):
        unit.putpixel((x, 0), value)
    px = _pixels(load_image(_save(tmp_path, unit, "unit.tiff")))
    assert px[0, :, 0].tolist() == [0, 128, 255]

    byte_range = Image.new("F", (2, 1))
    byte_range.putpixel((0, 0), 12.4)
    byte_range.putpixel((1, 0), 250.0)
    px = _pixels(load_image(_save(tmp_path, byte_range, "bytes.tiff")))
    assert px[0, :, 0].tolist() == [12, 250]


def _oriented_jpeg(tmp_path, orientation: int):
    """40 wide x 20 high: left half red, right half blue, with an EXIF orientation tag."""
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(tmp_path, im, f"o{orientation}.jpg", exif=exif.tobytes(), quality=95)


def test_exif_rotation_is_applied(tmp_path):
    path = _oriented_jpeg(tmp_path, 6)  # displayed rotated 90 degrees clockwise
    out = load_image(path)
    assert out.size == (20, 40)
    assert image_size(path) == (20, 40)
    assert inspect_image(path) == (None, (20, 40))
    px = _pixels(out).astype(int)
    top, bottom = px[5, 10], px[35, 10]
    assert top[0] > 200 and top[2] < 60      # the red left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60  # the blue right half at the bottom
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(px, expected)
    # The tag is not left on the result: applying exif_transpose again changes nothing.
    assert ImageOps.exif_transpose(out).size == (20, 40)


@pytest.mark.parametrize("orientation,size", [(1, (40, 20)), (3, (40, 20)), (8, (20, 40)), (5, (20, 40))])
def test_other_orientations(tmp_path, orientation, size):
    path = _oriented_jpeg(tmp_path, orientation)
    assert load_image(path).size == size
    assert image_size(path) == size
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(_pixels(load_image(path)), expected)


def test_check_image_reasons(tmp_path):
    good = _save(tmp_path, Image.new("RGB", (32, 32), (1, 2, 3)), "good.jpg")
    assert check_image(good) is None
    assert check_image(tmp_path / "missing.jpg") == "file not found"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert check_image(empty) == "file is empty (0 bytes)"
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    assert check_image(text) == "not an image file"
    assert check_image(tmp_path) == "not a file (a folder)"

    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for name in ("full.jpg", "full.png"):
        whole = _save(tmp_path, noisy, name).read_bytes()
        cut = tmp_path / ("cut-" + name)
        cut.write_bytes(whole[: len(whole) // 2])
        reason = check_image(cut)
        assert reason is not None and reason.startswith("truncated or corrupt image: "), reason


def test_load_image_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png: file is empty \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(DataError, match=r"nothere\.png: file not found"):
        load_image(tmp_path / "nothere.png")
    whole = _save(tmp_path, Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), np.uint8)),
                  "t.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[:300])
    with pytest.raises(DataError, match=r"cut\.jpg: truncated or corrupt image"):
        load_image(cut)
    with pytest.raises(DataError, match=r"nothere\.png: file not found"):
        image_size(tmp_path / "nothere.png")


@pytest.mark.parametrize("fmt, ext", [("GIF", "gif"), ("WEBP", "webp"), ("PPM", "ppm")])
def test_formats_outside_the_spec_are_refused_by_validation_but_decoded(tmp_path, fmt, ext):
    path = _save(tmp_path, Image.new("RGB", (4, 3), (0, 0, 255)), f"x.{ext}", format=fmt)
    reason, size = inspect_image(path)
    assert reason == (f"{fmt} images are not one of the spec's formats (jpg, jpeg, png, jpe, jfif, bmp, tif, tiff); "
                      f"convert it, e.g. to PNG") and size is None
    assert load_image(path).size == (4, 3)  # inference still reads it


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF"])
def test_spec_formats_pass(tmp_path, fmt):
    path = _save(tmp_path, Image.new("RGB", (4, 3)), f"x.{fmt.lower()}", format=fmt)
    assert inspect_image(path) == (None, (4, 3))


def test_image_from_array_integer_and_alpha():
    data = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(_pixels(image_from_array(data)), data)
    assert _pixels(image_from_array(np.array([[True, False]])))[0].tolist() == [[255] * 3, [0] * 3]
    assert _pixels(image_from_array(np.array([[300, 65535]], dtype=np.int32)))[0].tolist() == [[1] * 3, [255] * 3]
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque, then fully transparent: white, as load_image does
    assert _pixels(image_from_array(rgba))[0].tolist() == [[10, 20, 30], [255, 255, 255]]
    assert _pixels(image_from_array(np.full((2, 2, 1), 7, dtype=np.uint8)))[0, 0].tolist() == [7, 7, 7]
    with pytest.raises(DataError, match=r"values in \[-5, 3\]"):
        image_from_array(np.array([[-5, 3]], dtype=np.int16))
    with pytest.raises(DataError, match="must hold numbers"):
        image_from_array(np.array([["a", "b"]]))
