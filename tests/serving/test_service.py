"""The model service on a free 127.0.0.1 port, answered by real HTTP requests with real image bytes."""

from __future__ import annotations

import base64
import threading

import pytest

from jupyter_avml.inference.predictor import load_model
from jupyter_avml.serving.limits import ServiceLimits
from jupyter_avml.serving.model_source import ServedModel
from jupyter_avml.serving.server import ServiceThread
from tests.serving.http import call, post_image, post_json
from tests.serving.models import CLASSES, image_bytes

B64 = [base64.b64encode(image_bytes(seed=i)).decode() for i in range(3)]


@pytest.fixture(scope="module")
def classifier(saved_models):
    return ServedModel(saved_models("image-classification"), device="cpu")


@pytest.fixture(scope="module")
def service(classifier):
    with ServiceThread(classifier, key="secret", limits=ServiceLimits(max_batch_wait_s=0.05)) as running:
        yield running


def _approx(result, expected):
    assert result["labels"] == expected["labels"]
    assert result["probs"] == pytest.approx(expected["probs"], abs=1e-5)


@pytest.mark.parametrize("task", ["image-classification", "image-object-detection", "image-instance-segmentation"])
def test_raw_image_bytes_get_the_spec_answer_of_the_model(task, saved_models):
    outputs = saved_models(task)
    data = image_bytes()
    expected = load_model(outputs, device="cpu").predict(data)
    with ServiceThread(ServedModel(outputs, device="cpu")) as running:
        status, answer, headers = post_image(running.url, data)
    assert status == 200 and headers["content-type"] == "application/json"
    if task == "image-classification":
        assert set(answer) == {"filename", "probs", "labels"} and answer["labels"] == CLASSES
        _approx(answer, expected)
    else:
        assert set(answer) == {"filename", "boxes"} and answer["boxes"], "threshold 0: an untrained model finds some"
        keys = {"box", "label", "score"} | ({"polygon"} if task.endswith("segmentation") else set())
        assert all(set(item) == keys for item in answer["boxes"])
        assert [b["label"] for b in answer["boxes"]] == [b["label"] for b in expected["boxes"]]
        assert [b["score"] for b in answer["boxes"]] == pytest.approx([b["score"] for b in expected["boxes"]],
                                                                      abs=1e-5)


def test_json_bodies_and_mlflow_inputs_answer_in_their_forms(service, classifier):
    expected = classifier.default.predict([base64.b64decode(b) for b in B64])
    status, one, _ = post_json(service.url, {"image": B64[0]}, "secret")
    assert status == 200 and isinstance(one, dict)
    _approx(one, expected[0])
    for payload in ({"image": B64}, [{"image": b} for b in B64]):
        status, many, _ = post_json(service.url, payload, "secret")
        assert status == 200 and len(many) == 3
        for got, want in zip(many, expected, strict=True):
            _approx(got, want)
    mlflow_inputs = [
        {"dataframe_split": {"columns": ["image"], "data": [[b] for b in B64]}},
        {"dataframe_records": [{"image": b} for b in B64]},
        {"instances": [{"image": {"b64": b}} for b in B64]},
        {"inputs": {"image": B64}},
    ]
    for payload in mlflow_inputs:
        status, answer, _ = post_json(service.url, payload, "secret", path="/invocations")
        assert status == 200, (payload.keys(), answer)
        assert list(answer) == ["predictions"] and len(answer["predictions"]) == 3
        for got, want in zip(answer["predictions"], expected, strict=True):
            assert set(got) == {"probs", "labels"}  # the rows of the MLflow model's output table
            _approx(got, want)


def test_settings_change_the_answer_per_request_within_their_ranges(saved_models):
    outputs = saved_models("image-object-detection")
    data = image_bytes(seed=5)
    strict = load_model(outputs, device="cpu", box_score_thresh=0.2, box_detections_per_img=2).predict(data)
    with ServiceThread(ServedModel(outputs, device="cpu")) as running:
        _, loose, _ = post_image(running.url, data)
        status, answer, _ = post_image(running.url, data, query="?box_score_thresh=0.2&box_detections_per_img=2")
        assert status == 200
        assert len(answer["boxes"]) <= 2 < len(loose["boxes"])
        assert [b["score"] for b in answer["boxes"]] == pytest.approx([b["score"] for b in strict["boxes"]], abs=1e-5)
        status, same, _ = post_json(running.url, {"image": base64.b64encode(data).decode(),
                                                  "params": {"box_score_thresh": 0.2, "box_detections_per_img": 2}})
        assert status == 200 and same["boxes"] == answer["boxes"]
        status, error, _ = post_image(running.url, data, query="?box_score_thresh=1.5")
        assert status == 400 and error["error"]["code"] == "bad_setting"
        assert "box_score_thresh must be a float in [0, 1]" in error["error"]["message"]
        status, error, _ = post_image(running.url, data, query="?valid_crop_size=224")
        assert status == 400 and error["error"]["code"] == "unknown_setting"
        assert "box_score_thresh" in error["error"]["message"]  # lists the settings it has


def test_health_is_open_and_metadata_describes_the_model(service):
    status, health, _ = call(service.url, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    status, info, _ = call(service.url, "GET", "/metadata", headers={"Authorization": "Bearer secret"})
    assert status == 200
    assert info["task"] == "image-classification" and info["labels"] == CLASSES
    assert info["settings"]["valid_crop_size"] == {"default": 32, "range": "an integer in [1, 4096]",
                                                   "doc": "Crop fed to the network at validation."}
    assert info["version"]["jupyter_avml"] and info["service"]["key_required"] is True
    assert info["service"]["limits"]["max_batch_size"] == 8


def test_the_key_is_required_and_compared(service):
    data = image_bytes()
    for headers, code in (({}, "missing_key"), ({"Authorization": "Bearer wrong"}, "wrong_key"),
                          ({"Authorization": "Basic c2VjcmV0"}, "bad_authorization"),
                          ({"Authorization": "Bearer secretX"}, "wrong_key")):
        status, error, answer_headers = call(service.url, "POST", "/score", data,
                                             {"Content-Type": "application/octet-stream", **headers})
        assert status == 401 and error["error"]["code"] == code
        assert answer_headers["www-authenticate"].startswith("Bearer")
    status, _, _ = call(service.url, "GET", "/metadata")
    assert status == 401
    status, answer, _ = post_image(service.url, data, "secret")
    assert status == 200 and answer["labels"] == CLASSES


def test_concurrent_clients_share_micro_batches_and_get_their_own_answers(service, classifier):
    images = [image_bytes(seed=10 + i) for i in range(8)]
    expected = classifier.default.predict(images)
    answers: dict[int, tuple] = {}
    start = threading.Barrier(len(images))

    def client(index: int) -> None:
        start.wait(10)
        answers[index] = post_image(service.url, images[index], "secret")

    before = service.app.state.service.batcher.stats.batches
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stats = service.app.state.service.batcher.stats
    assert all(answers[i][0] == 200 for i in range(len(images)))
    for i, want in enumerate(expected):
        _approx(answers[i][1], want)
    assert stats.largest_batch > 1 and stats.batches - before < len(images)


class SlowModel:
    """A stand-in for ServedModel whose predictions take ``seconds``."""

    task = "image-classification"
    names = ()

    def __init__(self, seconds: float):
        self.seconds = seconds

    def settings_key(self, settings):
        return ()

    def predict(self, key, images):
        import time

        time.sleep(self.seconds)
        return [{"filename": None, "probs": [1.0], "labels": ["x"]} for _ in images]


def test_a_request_over_the_time_limit_is_503_and_the_service_goes_on():
    import time

    limits = ServiceLimits(request_timeout_s=0.5)
    with ServiceThread(SlowModel(1.5), limits=limits) as running:
        started = time.perf_counter()
        status, answer, headers = post_image(running.url, image_bytes())
        elapsed = time.perf_counter() - started
        assert status == 503 and answer["error"]["code"] == "timeout" and headers["retry-after"] == "1"
        assert "0.5 s" in answer["error"]["message"] and elapsed < 1.4
        running.app.state.service.model.seconds = 0.0
        time.sleep(1.2)  # the abandoned batch finishes; the next one is served
        status, answer, _ = post_image(running.url, image_bytes())
        assert status == 200 and answer["labels"] == ["x"]
