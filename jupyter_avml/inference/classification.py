"""Classification predictor: ``{"probs": [...], "labels": [...]}`` per image (all labels, in model order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from jupyter_avml.inference.predictor import Predictor


class ClassificationPredictor(Predictor):
    def __init__(self, payload: dict, config, device, model_file=None):
        super().__init__(payload, config, device, model_file)
        from jupyter_avml.models.classification import build_classifier
        from jupyter_avml.models.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform

        spec = config.model_spec
        self.model = build_classifier(spec, len(self.class_names), pretrained=False,
                                      img_size=config.train_crop_size)
        self.model.load_state_dict(payload["state_dict"])
        self.model.to(device).eval()
        norm = payload.get("normalization") or {}
        self.transform = eval_transform(config.valid_resize_size, config.valid_crop_size,
                                        norm.get("mean", IMAGENET_MEAN), norm.get("std", IMAGENET_STD))
        self.multilabel = self.task.is_multilabel

    def predict_batch(self, images: Sequence) -> list[dict[str, Any]]:
        batch = torch.stack([self.transform(image) for image in images]).to(self.device)
        with torch.inference_mode():
            logits = self.model(batch).float()
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)
        return [{"probs": row.tolist(), "labels": list(self.class_names)} for row in probs.cpu()]
