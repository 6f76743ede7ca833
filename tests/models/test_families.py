"""Model families: one record per family, and every part of the system that depends on the family reads it."""

from __future__ import annotations

import pytest

from jupyter_avml.config import params
from jupyter_avml.models import families, get_family, get_model_spec, list_families, list_models


def test_every_model_of_the_zoo_belongs_to_a_registered_family():
    assert set(list_families()) == {"timm", "torchvision", "yolov5"}
    assert {get_model_spec(name).family for name in list_models()} == set(list_families())


@pytest.mark.parametrize("name", ["timm", "torchvision", "yolov5"])
def test_a_family_record_resolves_its_trainer_predictor_and_settings(name):
    from jupyter_avml.inference.predictor import Predictor
    from jupyter_avml.training.recipe import Recipe

    family = get_family(name)
    trainer = family.trainer_class()
    if family.trainer_kind == "recipe":
        assert issubclass(trainer, Recipe)
    else:
        assert callable(getattr(trainer, "fit", None))
    assert issubclass(family.predictor_class(), Predictor)
    assert family.inference_settings and set(family.inference_settings) <= set(params.PARAMS)
    # The configuration's scopes are the family's (config.params.family_scopes reads the record).
    assert params.family_scopes(name) == set(family.scopes)
    assert set(family.scopes) <= {params.ALL, params.CLASSIFICATION, params.TORCHVISION_DETECTION, params.YOLO,
                                  params.DETECTION}


def test_scope_names_agree_with_the_configuration():
    assert (families.ALL, families.CLASSIFICATION, families.TORCHVISION_DETECTION, families.YOLO,
            families.DETECTION) == (params.ALL, params.CLASSIFICATION, params.TORCHVISION_DETECTION, params.YOLO,
                                    params.DETECTION)


def test_unknown_and_duplicate_families_are_errors():
    with pytest.raises(ValueError, match="unknown model family 'keras'.*timm"):
        get_family("keras")
    with pytest.raises(ValueError, match="unknown model family"):
        params.family_scopes("keras")
    with pytest.raises(ValueError, match="already registered"):
        families.register_family(get_family("timm"))
