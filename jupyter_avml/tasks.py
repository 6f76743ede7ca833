"""The four tasks of the spec and what each one optimises."""

from __future__ import annotations

from enum import Enum

from jupyter_avml.errors import ConfigError


class ImageTask(str, Enum):
    """Task types, by the names users know from the cloud system (spec section 1)."""

    IMAGE_CLASSIFICATION = "image-classification"
    IMAGE_CLASSIFICATION_MULTILABEL = "image-classification-multilabel"
    IMAGE_OBJECT_DETECTION = "image-object-detection"
    IMAGE_INSTANCE_SEGMENTATION = "image-instance-segmentation"

    def __str__(self) -> str:  # so f-strings and YAML dumps show the user-facing value
        return self.value

    @classmethod
    def parse(cls, value: str | ImageTask) -> ImageTask:
        """Accept the enum, its value, or its member name (any case)."""
        if isinstance(value, ImageTask):
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            for task in cls:
                if text in (task.value, task.name.lower()):
                    return task
        from jupyter_avml.config.loader import echo_value  # not at the top: the config package imports tasks

        choices = ", ".join(t.value for t in cls)
        raise ConfigError(f"task must be one of {choices}, got {echo_value(value)}", field="task", value=value)

    @property
    def is_classification(self) -> bool:
        return self in (ImageTask.IMAGE_CLASSIFICATION, ImageTask.IMAGE_CLASSIFICATION_MULTILABEL)

    @property
    def is_multilabel(self) -> bool:
        return self is ImageTask.IMAGE_CLASSIFICATION_MULTILABEL

    @property
    def has_boxes(self) -> bool:
        return self in (ImageTask.IMAGE_OBJECT_DETECTION, ImageTask.IMAGE_INSTANCE_SEGMENTATION)

    @property
    def has_masks(self) -> bool:
        return self is ImageTask.IMAGE_INSTANCE_SEGMENTATION

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self]


PRIMARY_METRIC: dict[ImageTask, str] = {
    ImageTask.IMAGE_CLASSIFICATION: "accuracy",
    ImageTask.IMAGE_CLASSIFICATION_MULTILABEL: "iou",
    ImageTask.IMAGE_OBJECT_DETECTION: "mean_average_precision",
    ImageTask.IMAGE_INSTANCE_SEGMENTATION: "mean_average_precision",
}
