"""``avml predict``, ``score``, ``serve``, ``deploy`` / ``deployments`` / ``deploy --stop`` through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_avml.cli.main import main
from jupyter_avml.inference.predictor import load_model
from tests.serving.http import post_image
from tests.serving.models import CLASSES, image_bytes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def images(tmp_path) -> list[Path]:
    paths = []
    for i in range(3):
        path = tmp_path / f"image_{i}.png"
        path.write_bytes(image_bytes(seed=i))
        paths.append(path)
    return paths


def test_predict_prints_the_top_classes_or_the_spec_json(saved_models, images, capsys, workspace):
    outputs = saved_models("image-classification")
    assert main(["predict", str(outputs), *map(str, images), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(f"{images[0]}: ") and lines[0].count(" 0.") == 3
    assert main(["predict", str(outputs), str(images[0]), "--json", "--device", "cpu"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    expected = load_model(outputs, device="cpu").predict(str(images[0]))
    assert result["filename"] == str(images[0]) and result["labels"] == CLASSES
    assert result["probs"] == pytest.approx(expected["probs"], abs=1e-6)


def test_predict_takes_inference_settings_and_refuses_unknown_ones(saved_models, images, capsys, workspace):
    outputs = saved_models("image-object-detection")
    assert main(["predict", str(outputs), str(images[0]), "--json", "--device", "cpu",
                 "--set", "box_detections_per_img=1"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert len(result["boxes"]) == 1
    assert main(["predict", str(outputs), str(images[0]), "--set", "valid_crop_size=3"]) == 2
    assert "valid_crop_size is not an inference setting" in capsys.readouterr().err


def test_score_writes_one_line_per_input_and_reports_bad_lines(saved_models, images, tmp_path, capsys, workspace):
    import base64

    outputs = saved_models("image-classification")
    source = tmp_path / "input.jsonl"
    rows = [{"image_url": images[0].name, "label": "circle"},
            {"image_url": "missing.png"},
            {"image": base64.b64encode(images[1].read_bytes()).decode()},
            {"image_url": str(images[2])}]
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\nnot json\n")
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(outputs), str(source), "-o", str(out), "--device", "cpu", "--batch-size", "2"]) == 1
    streams = capsys.readouterr()
    assert "5 line(s), 3 scored, 2 failed" in streams.out and "2 line(s) could not be scored" in streams.err
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in scored] == [1, 2, 3, 4, 5]
    assert scored[0]["label"] == "circle" and scored[0]["labels"] == CLASSES and len(scored[0]["probs"]) == 3
    assert "missing.png" in scored[1]["error"] and "probs" not in scored[1]
    assert "image" not in scored[2] and len(scored[2]["probs"]) == 3
    assert "error" in scored[4]
    predictor = load_model(outputs, device="cpu")
    assert scored[3]["probs"] == pytest.approx(predictor.predict(str(images[2]))["probs"], abs=1e-6)
    assert not Path(str(out) + ".partial").exists()


def test_an_interrupted_score_resumes_after_its_complete_lines(saved_models, images, tmp_path, capsys, workspace):
    outputs = saved_models("image-classification")
    source = tmp_path / "input.jsonl"
    source.write_text("".join(json.dumps({"image_url": str(p)}) + "\n" for p in images))
    out = tmp_path / "scored.jsonl"
    done = json.dumps({"line": 1, "image_url": str(images[0]), "probs": [1, 0, 0], "labels": CLASSES})
    Path(str(out) + ".partial").write_text(done + "\n" + '{"line": 2, "image_u')  # cut mid-line
    assert main(["score", str(outputs), str(source), "-o", str(out), "--device", "cpu"]) == 0
    assert "3 line(s), 3 scored (1 from an interrupted score), 0 failed" in capsys.readouterr().out
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["line"] for row in scored] == [1, 2, 3]
    assert scored[0]["probs"] == [1, 0, 0], "line 1 was kept, not scored again"
    assert len(scored[1]["probs"]) == 3


@pytest.mark.slow
def test_deploy_survives_its_caller_answers_with_its_key_and_stops(saved_models, workspace, capsys):
    """The deploying process exits (a kernel restart); the service goes on, is listed, answers, and stops."""
    outputs = saved_models("image-classification")
    script = textwrap.dedent(f"""
        import json, sys
        from jupyter_avml.cli.main import main
        sys.exit(main(["deploy", {str(outputs)!r}, "--name", "shapes", "--device", "cpu", "--json"]))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "AVML_WORKSPACE": str(workspace)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    deployed = json.loads(done.stdout)
    assert deployed["status"] == "serving" and deployed["key"] and deployed["tested"]["prediction"]["labels"] == CLASSES
    try:
        assert main(["deployments", "--json"]) == 0
        [shown] = json.loads(capsys.readouterr().out)
        assert shown["status"] == "serving" and shown["key_required"] is True and "key" not in shown
        status, answer, _ = post_image(deployed["url"], image_bytes(), deployed["key"])
        assert status == 200 and answer["labels"] == CLASSES
        status, _, _ = post_image(deployed["url"], image_bytes())
        assert status == 401
        from jupyter_avml.serving.deployments import list_deployments

        [listed] = list_deployments(workspace)
        assert (listed.name, listed.status, listed.url) == ("shapes", "serving", deployed["url"])
        log = (Path(deployed["folder"]) / "service.log").read_text()
        assert "POST /score 200" in log and "error=missing_key" in log
    finally:
        assert main(["deploy", "--stop", "shapes"]) == 0
    [listed] = list_deployments(workspace)
    assert listed.status == "stopped" and listed.url is None


@pytest.mark.slow  # a new interpreter imports torch and the model: 6 s, over 10 s on a busy CPU
def test_serve_answers_in_the_foreground_until_interrupted(saved_models, workspace):
    """``avml serve MODEL --port 0 --key KEY``: it prints where it listens, answers real requests (the key
    required), logs each request, and Ctrl-C (SIGINT) ends it cleanly."""
    import re
    import signal
    import time

    outputs = saved_models("image-classification")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AVML_WORKSPACE": str(workspace), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "jupyter_avml", "serve", str(outputs), "--port", "0",
                                "--key", "k3y", "--device", "cpu"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "".join(seen)
            seen.append(line)
            found = re.search(r" at (http://127\.0\.0\.1:\d+)$", line.strip())
            if found:
                url = found.group(1)
                break
        else:
            pytest.fail("avml serve did not say where it listens:\n" + "".join(seen))
        while "Ctrl-C stops it" not in seen[-1]:
            seen.append(process.stderr.readline())
        assert any("Authorization: Bearer k3y" in line for line in seen), "the printed curl request has the key"
        status, answer, _ = post_image(url, image_bytes(), "k3y")
        assert status == 200 and answer["labels"] == CLASSES and len(answer["probs"]) == 3
        status, answer, _ = post_image(url, image_bytes())
        assert status == 401 and answer["error"]["code"] == "missing_key"
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, rest  # the CLI's status for Ctrl-C, after uvicorn's graceful shutdown
    assert "POST /score 200" in rest and "error=missing_key" in rest  # each request logged, on stderr
    assert "Finished server process" in rest and "Traceback" not in rest


def test_serve_and_deploy_take_every_limit_from_the_command_line():
    from jupyter_avml.cli.main import build_parser
    from jupyter_avml.cli.serve import _limits
    from jupyter_avml.serving.limits import ServiceLimits

    flags = ["--max-body-bytes", "1000", "--max-image-pixels", "2000", "--max-images-per-request", "3",
             "--max-concurrent-requests", "4", "--request-timeout", "5", "--body-timeout", "6",
             "--max-batch-size", "7", "--max-batch-wait-ms", "8"]
    for verb in ("serve", "deploy"):
        limits = ServiceLimits(**_limits(build_parser().parse_args([verb, "MODEL", *flags])))
        assert limits == ServiceLimits(max_body_bytes=1000, max_image_pixels=2000, max_images_per_request=3,
                                       max_concurrent_requests=4, request_timeout_s=5, body_timeout_s=6,
                                       max_batch_size=7, max_batch_wait_s=0.008)
