"""Detection and instance segmentation predictor for the torchvision detectors (spec section 11).

Per image: ``{"boxes": [{"box": {"topX", "topY", "bottomX", "bottomY"}, "label": name, "score": s}, ...]}``
with coordinates as fractions of the image width/height in [0, 1], by decreasing score, only detections
scoring at least ``box_score_thresh``. Instance segmentation adds ``"polygon": [[x1, y1, x2, y2, ...], ...]``
(fractions; one list per region of the mask): the mask probabilities are thresholded at 0.5 and traced by
``data.masks.mask_to_polygons``. A detection whose mask keeps no region of at least
``data.masks.DEFAULT_MIN_AREA`` pixels has no outline to report and is left out.

The model is rebuilt with ``build_detector(pretrained=False)`` and the settings of the configuration
(``min_size``, ``max_size``, ``box_score_thresh``, ``box_nms_thresh``, ``box_detections_per_img``, which
``load_model`` lets the caller change), then given the trained weights and the BatchNorm epsilon the training
used, read from the model file (``detector.batchnorm_eps``; files written before it was recorded get
``build_detector``'s rule). With ``tile_grid_size``, the full image and its tiles are predicted and merged
(``models.tiling``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from jupyter_avml.inference.predictor import Predictor


def _fraction(value: float, size: int) -> float:
    return min(max(float(value) / size, 0.0), 1.0)


class DetectionPredictor(Predictor):
    def __init__(self, payload: dict, config, device, model_file=None):
        super().__init__(payload, config, device, model_file)
        from jupyter_avml.models.detection import build_detector

        spec = config.model_spec
        self.model = build_detector(spec, len(self.class_names), pretrained=False, min_size=config.min_size,
                                    max_size=config.max_size, box_score_thresh=config.box_score_thresh,
                                    box_nms_thresh=config.box_nms_thresh,
                                    box_detections_per_img=config.box_detections_per_img)
        self.model.load_state_dict(payload["state_dict"])
        # The backbone trained with FrozenBatchNorm2d at this epsilon (0 after torchvision's COCO v1 weights); the
        # BatchNorm2d of a pretrained=False build must use the same one to compute the same function.
        set_batchnorm_eps(self.model, saved_batchnorm_eps(payload, config))
        self.model.to(device).eval()
        self.with_masks = self.task.has_masks

    def predict_batch(self, images: Sequence) -> list[dict[str, Any]]:
        """Predictions for PIL RGB images, in the spec's response format (see the module docstring)."""
        from jupyter_avml.models.tiling import predict_images
        from jupyter_avml.models.transforms import to_model_input

        config = self.config
        inputs = [to_model_input(image).to(self.device) for image in images]
        with torch.inference_mode():
            outputs = predict_images(self.model, inputs, grid=config.tile_grid_size,
                                     overlap=config.tile_overlap_ratio,
                                     nms_thresh=config.tile_predictions_nms_thresh,
                                     max_detections=config.box_detections_per_img)
        return [self._format(output, image.width, image.height) for output, image in zip(outputs, images, strict=True)]

    def _format(self, output: dict[str, torch.Tensor], width: int, height: int) -> dict[str, Any]:
        from jupyter_avml.data.masks import mask_to_polygons, normalize_polygons
        from jupyter_avml.models.transforms import MASK_THRESHOLD

        boxes = output["boxes"].float().cpu().tolist()
        scores = output["scores"].float().cpu().tolist()
        labels = output["labels"].cpu().tolist()
        masks = (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy() if self.with_masks else None
        found = []
        for k, (box, score, label) in enumerate(zip(boxes, scores, labels, strict=True)):
            item: dict[str, Any] = {
                "box": {"topX": _fraction(box[0], width), "topY": _fraction(box[1], height),
                        "bottomX": _fraction(box[2], width), "bottomY": _fraction(box[3], height)},
                "label": self.class_names[label - 1],
                "score": float(score),
            }
            if masks is not None:
                polygons = normalize_polygons(mask_to_polygons(masks[k]), width, height)
                if not polygons:
                    continue
                # Outlines run along pixel edges, so they already lie in [0, 1]; the clamp guards rounding.
                item["polygon"] = [[min(max(v, 0.0), 1.0) for v in segment] for segment in polygons]
            found.append(item)
        return {"boxes": found}


def saved_batchnorm_eps(payload: dict, config) -> float:
    """The backbone's BatchNorm epsilon recorded at training time; for older model files, ``build_detector``'s rule
    (0 when training started from torchvision's COCO v1 weights, else torch's default)."""
    from jupyter_avml.models.detection import coco_v1_batchnorm_eps

    recorded = (payload.get("detector") or {}).get("batchnorm_eps")
    if recorded is not None:
        return float(recorded)
    return coco_v1_batchnorm_eps(config.model_spec, pretrained=bool(config.pretrained),
                                 pretrained_weights=config.pretrained_weights)


def set_batchnorm_eps(model: torch.nn.Module, eps: float) -> None:
    from torchvision.ops import FrozenBatchNorm2d

    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)):
            module.eps = eps
