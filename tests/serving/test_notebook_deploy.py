"""``%avml deploy`` in a notebook: the URL, the key and a tested request printed, the deployment kept in a
variable; ``%avml deployments``; ``%avml deploy --stop``."""

from __future__ import annotations

import pytest

from tests.cli.doors import cell, notebook_shell
from tests.serving.http import post_image
from tests.serving.models import CLASSES, image_bytes


@pytest.mark.slow  # starts a service process (imports torch and the model: about 10 s on a busy CPU)
def test_deploy_from_a_cell_prints_a_tested_request_and_binds_the_deployment(saved_models, workspace, tmp_path):
    outputs = saved_models("image-classification")
    image = tmp_path / "probe.png"
    image.write_bytes(image_bytes(seed=5))
    shell = notebook_shell()
    try:
        ok, out, err, _ = cell(shell, f"%avml deploy {outputs} --name nb --image {image} --device cpu --var service")
        assert ok, err
        service = shell.user_ns["service"]
        assert service.url.startswith("http://127.0.0.1:") and service.key
        assert f"at {service.url}" in out and f"key: {service.key}" in out
        assert f"Authorization: Bearer {service.key}" in out and "--data-binary @" + str(image) in out
        assert f"request (tested just now on {image})" in out and '"labels": ["circle"' in out
        status, answer, _ = post_image(service.url, image.read_bytes(), service.key)
        assert status == 200 and answer["labels"] == CLASSES
        ok, out, err, _ = cell(shell, "%avml deployments")
        assert ok and "nb " in out and "serving" in out and service.url in out, out + err
    finally:
        ok, out, err, _ = cell(shell, "%avml deploy --stop nb")
    assert ok and "deployment nb: stopped" in out, out + err
    ok, out, _, _ = cell(shell, "%avml deployments")
    assert "stopped" in out
