"""The static fallback of a review: a PNG grid of the worst samples, with ground truth and predictions drawn.

The App is live and goes away with the kernel; this picture stays in the saved notebook. Each tile is one sample
(in the order of the view it comes from: mistakes first), scaled to ``tile`` pixels: ground-truth boxes and
masks in green, predictions in red with their confidence; classification tiles carry ``label / predicted
(confidence)`` beneath the image. Nothing here needs FiftyOne's App or a browser.
"""

from __future__ import annotations

import io

import numpy as np

from jupyter_avml.qa.labels import GROUND_TRUTH, full_mask

TRUTH, PREDICTED = (46, 160, 67), (214, 39, 40)
CAPTION = 28  # pixels of text under each tile


def worst_samples_png(view, field: str | None, *, count: int = 12, columns: int = 4, tile: int = 192) -> bytes:
    """A PNG of the first ``count`` samples of ``view`` (``field``: the predictions to draw, or None)."""
    from PIL import Image

    samples = list(view.limit(count))
    if not samples:
        canvas = Image.new("RGB", (tile * 2, CAPTION), "white")
        _text(canvas, (4, 6), "no sample in this view", (90, 90, 90))
        return _png(canvas)
    rows = (len(samples) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * tile, rows * (tile + CAPTION)), "white")
    for k, sample in enumerate(samples):
        canvas.paste(_tile(sample, field, tile), ((k % columns) * tile, (k // columns) * (tile + CAPTION)))
    return _png(canvas)


def _tile(sample, field: str | None, size: int):
    from PIL import Image, ImageDraw

    from jupyter_avml.data.images import load_image

    try:
        image = load_image(sample.filepath)
    except Exception:  # an unreadable image still gets its tile, saying so
        image = Image.new("RGB", (size, size), (230, 230, 230))
    width, height = image.size
    scale = size / max(width, height)
    shown = image.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    out = Image.new("RGB", (size, size + CAPTION), "white")
    out.paste(shown, (0, 0))
    truth = sample[GROUND_TRUTH] if sample.has_field(GROUND_TRUTH) else None
    predicted = sample[field] if field and sample.has_field(field) else None
    draw = ImageDraw.Draw(out, "RGBA")
    caption = []
    for label, color in ((truth, TRUTH), (predicted, PREDICTED)):
        if label is None:
            continue
        if hasattr(label, "detections"):
            for detection in label.detections:
                _detection(draw, out, detection, width, height, scale, color)
        elif hasattr(label, "classifications"):
            caption.append("+".join(c.label for c in label.classifications) or "-")
        else:
            score = f" ({label.confidence:.2f})" if getattr(label, "confidence", None) is not None else ""
            caption.append(f"{label.label}{score}")
    if caption:
        text = " / ".join(caption)
        _text(out, (3, size + 2), text, (20, 20, 20))
    elif truth is not None and hasattr(truth, "detections"):
        count_p = len(predicted.detections) if predicted is not None else 0
        _text(out, (3, size + 2), f"{len(truth.detections)} true / {count_p} predicted", (20, 20, 20))
    return out


def _detection(draw, canvas, detection, width: int, height: int, scale: float, color) -> None:
    from PIL import Image

    x, y, w, h = detection.bounding_box
    box = [x * width * scale, y * height * scale, (x + w) * width * scale, (y + h) * height * scale]
    if detection.mask is not None:
        mask = full_mask(detection, width, height)
        layer = Image.fromarray((mask * 90).astype(np.uint8), "L").resize(
            (max(1, round(width * scale)), max(1, round(height * scale))))
        canvas.paste(Image.new("RGB", layer.size, color), (0, 0), layer)
    draw.rectangle(box, outline=color + (255,), width=2)
    score = f" {detection.confidence:.2f}" if detection.confidence is not None else ""
    _text(canvas, (box[0] + 2, max(0, box[1] - 11)), f"{detection.label}{score}", color)


def _text(image, xy, text: str, color) -> None:
    from PIL import ImageDraw

    ImageDraw.Draw(image).text(xy, text[:40], fill=color)


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
