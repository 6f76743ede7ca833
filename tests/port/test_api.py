"""The cloud API's names build the same experiments as the YAML files (one code path); nothing trains here."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from jupyter_avml.automl import (
    AutoMLImageConfig,
    BanditPolicy,
    BayesianParameterSampling,
    Choice,
    GridParameterSampling,
    ImageTask,
    MedianStoppingPolicy,
    RandomParameterSampling,
    SearchSpace,
    TruncationSelectionPolicy,
    Uniform,
    choice,
    image_classification,
    image_object_detection,
    loguniform,
    quniform,
    uniform,
)
from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.config import parse_experiment
from jupyter_avml.sweep.config_text import load_yaml_nested


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("{}\n")  # parsing a configuration only checks that the file exists
    return path


def from_yaml(text: str, base_dir):
    mapping, lines = load_yaml_nested(text)
    return parse_experiment(mapping, lines=lines, base_dir=base_dir)


def same_experiment(a, b) -> None:
    assert a.fixed == b.fixed
    assert a.space == b.space and a.has_search_space == b.has_search_space
    assert (a.sampling, a.iterations, a.max_concurrent_iterations, a.budget_seconds, a.trial_timeout_seconds) == \
        (b.sampling, b.iterations, b.max_concurrent_iterations, b.budget_seconds, b.trial_timeout_seconds)
    assert a.policy == b.policy and a.primary_metric == b.primary_metric


# -- AutoMLImageConfig takes the sweep keys --------------------------------------------------------------------
def test_the_spec_arguments_build_the_experiment_the_yaml_file_builds(data, tmp_path):
    config = AutoMLImageConfig(
        task=ImageTask.IMAGE_CLASSIFICATION, compute_target="local", training_data=str(data),
        hyperparameter_sampling=RandomParameterSampling({
            "model_name": choice("resnet18", "resnet34"), "learning_rate": uniform(0.001, 0.01),
            "number_of_epochs": choice(15, 30)}),
        iterations=10, max_concurrent_iterations=2, primary_metric="accuracy",
        early_termination_policy=BanditPolicy(evaluation_interval=2, slack_factor=0.2, delay_evaluation=6),
        experiment_timeout_hours=2, arguments=["--early_stopping", 1, "--evaluation_frequency", 2])
    yaml_text = f"""
task: image-classification
training_data: {data}
compute_target: local
hyperparameter_sampling: random
search_space:
  model_name: choice('resnet18', 'resnet34')
  learning_rate: uniform(0.001, 0.01)
  number_of_epochs: choice(15, 30)
iterations: 10
max_concurrent_iterations: 2
primary_metric: accuracy
early_termination_policy: {{type: bandit, evaluation_interval: 2, slack_factor: 0.2, delay_evaluation: 6}}
experiment_timeout_hours: 2
arguments: ["--early_stopping", 1, "--evaluation_frequency", 2]
"""
    same_experiment(config.experiment_config, from_yaml(yaml_text, tmp_path))
    assert config.task is ImageTask.IMAGE_CLASSIFICATION and config.iterations == 10
    assert config.experiment_config.fixed["evaluation_frequency"] == 2
    assert "choice('resnet18', 'resnet34')" in config.to_yaml()


def test_the_spec_baseline_is_one_grid_child(data):
    config = AutoMLImageConfig(task=ImageTask.IMAGE_OBJECT_DETECTION, compute_target="local", training_data=str(data),
                               hyperparameter_sampling=GridParameterSampling({"model_name": choice("yolov5")}),
                               iterations=1)
    spec = config.experiment_config
    assert (spec.sampling, spec.iterations, spec.task) == ("grid", 1, "image-object-detection")
    assert spec.space.grid() == [{"model_name": "yolov5"}]


def test_samplings_check_their_rule_where_they_are_written():
    with pytest.raises(ConfigError, match="GridParameterSampling: grid sampling supports only choice"):
        GridParameterSampling({"learning_rate": uniform(0.001, 0.01)})
    with pytest.raises(ConfigError, match="BayesianParameterSampling: bayesian sampling supports only choice"):
        BayesianParameterSampling({"learning_rate": loguniform(-9, -2)})
    bayes = BayesianParameterSampling({"learning_rate": uniform(0.001, 0.01), "training_batch_size":
                                       quniform(8, 32, 8)})
    assert bayes.settings()["sampling"] == "bayesian" and bayes.SAMPLING_NAME == "BayesianOptimization"
    with pytest.raises(ConfigError, match="unknown search expression unifrom"):
        RandomParameterSampling({"learning_rate": "unifrom(0.1, 0.2)"})
    with pytest.raises(ConfigError, match="properties .* are not used here"):
        RandomParameterSampling({"learning_rate": uniform(0.001, 0.01)}, properties={"rngseed": 3})
    conditional = RandomParameterSampling({"model": choice({"model_name": choice("yolov5"), "learning_rate":
                                                            uniform(0.001, 0.01)},
                                                           {"model_name": choice("fasterrcnn_resnet18_fpn")})})
    assert conditional.space.is_conditional and len(conditional.space.subspaces) == 2


def test_a_sampling_object_and_search_space_given_twice_is_refused(data):
    with pytest.raises(ConfigError, match="already gives search_space"):
        AutoMLImageConfig(task="image-classification", training_data=str(data), search_space={"seed": choice(1, 2)},
                          hyperparameter_sampling=GridParameterSampling({"model_name": choice("resnet18")}))


# -- compute_target and primary_metric -------------------------------------------------------------------------
@pytest.mark.parametrize("target, device", [("local", None), ("localhost", None), ("cpu", "cpu"), ("CUDA", "cuda"),
                                            ("cuda:1", "cuda:1")])
def test_compute_targets_of_this_machine_set_the_device(data, target, device):
    spec = AutoMLImageConfig(task="image-classification", training_data=str(data), compute_target=target,
                             model_name="resnet18").experiment_config
    assert spec.fixed.get("device") == device


class AmlCompute:  # what a cloud notebook passes: a compute object with a name
    name = "gpu-cluster"


@pytest.mark.parametrize("target, expected", [
    ("gpu-cluster", "'gpu-cluster' looks like a cloud compute cluster, which does not exist here"),
    (AmlCompute(), "compute_target is an object (AmlCompute 'gpu-cluster')"),
    ("ray://head:10001", "a Ray cluster is the way to grow beyond this machine, but running children on one is not "
                         "available yet"),
])
def test_cloud_compute_targets_are_refused_with_what_to_use(data, target, expected):
    with pytest.raises(ConfigError) as caught:
        AutoMLImageConfig(task="image-classification", training_data=str(data), compute_target=target)
    assert expected in str(caught.value) and "use 'local'" in str(caught.value)
    assert caught.value.field == "compute_target"


def test_compute_target_and_a_different_device_are_refused(data):
    with pytest.raises(ConfigError, match="compute_target 'cpu' runs children on 'cpu' but device is set to 'cuda'"):
        AutoMLImageConfig(task="image-classification", training_data=str(data), compute_target="cpu", device="cuda")


@pytest.mark.parametrize("task", list(ImageTask))
def test_the_task_primary_metric_is_accepted(data, task):
    camel = "".join(part.title() for part in task.primary_metric.split("_"))  # the newer generation's spelling
    for metric in (task.primary_metric, camel):
        spec = AutoMLImageConfig(task=task, training_data=str(data), primary_metric=metric).experiment_config
        assert spec.primary_metric == task.primary_metric


def test_another_primary_metric_is_not_supported(tmp_path, data):
    with pytest.raises(ConfigError, match="primary_metric 'precision_score_weighted' is not supported for "
                                          "image-classification: its primary metric is accuracy"):
        AutoMLImageConfig(task="image-classification", training_data=str(data),
                          primary_metric="precision_score_weighted")
    yaml_file = tmp_path / "exp.yaml"
    yaml_file.write_text(f"task: image-object-detection\ntraining_data: {data}\nprimary_metric: iou\n")
    with pytest.raises(ConfigError) as caught:
        parse_experiment(yaml_file)
    assert caught.value.line == 3 and "another primary metric is not supported" in str(caught.value)


# -- the single-run configuration ------------------------------------------------------------------------------
def test_the_run_configuration_points_sweep_keys_to_the_experiment_api():
    from jupyter_avml import AutoMLImageConfig as RunConfig

    with pytest.raises(ConfigError) as caught:
        RunConfig(task="image-classification", training_data="t.jsonl", hyperparameter_sampling="grid")
    assert "hyperparameter_sampling is an experiment (sweep) setting" in str(caught.value)
    assert "jupyter_avml.automl.AutoMLImageConfig" in str(caught.value)


def test_newer_names_are_read_as_ours():
    from jupyter_avml import AutoMLImageConfig as RunConfig

    config = RunConfig(task="image-object-detection", training_data="t.jsonl", model_name="yolov5",
                       validation_data_size=0.3, image_size=320, learning_rate_scheduler="WarmupCosine",
                       optimizer="Adamw", validation_metric_type="CocoVoc", ams_gradient=True, random_seed=4)
    assert (config.split_ratio, config.img_size, config.lr_scheduler, config.optimizer) == \
        (0.3, 320, "warmup_cosine", "adamw")
    assert (config.validation_metric_type, config.amsgrad, config.seed) == ("coco_voc", 1, 4)
    assert {"split_ratio", "img_size"} <= config.user_keys
    with pytest.raises(ConfigError, match=r"validation_data_size is another name of split_ratio; give one of them "
                                          r"\(got split_ratio=0.2 and validation_data_size=0.3\)"):
        RunConfig(task="image-classification", training_data="t.jsonl", split_ratio=0.2, validation_data_size=0.3)


def test_split_ratio_says_why_its_ends_are_refused():
    from jupyter_avml import AutoMLImageConfig as RunConfig

    for value, name in ((0, "split_ratio"), (1.0, "validation_data_size")):
        with pytest.raises(ConfigError) as caught:
            RunConfig(task="image-classification", training_data="t.jsonl", **{name: value})
        assert "must be a float in (0, 1)" in str(caught.value)
        assert "0 would hold out no validation image and 1 no training image" in str(caught.value)
        assert caught.value.field == name


def test_warmup_epochs_zero_is_accepted_on_purpose():
    from jupyter_avml import AutoMLImageConfig as RunConfig

    assert RunConfig(task="image-classification", training_data="t.jsonl",
                     warmup_cosine_lr_warmup_epochs=0).warmup_cosine_lr_warmup_epochs == 0


# -- the newer generation's job builders -----------------------------------------------------------------------
def test_an_object_detection_job_is_the_v2_yaml(data, tmp_path):
    job = image_object_detection(training_data=str(data), target_column_name="label",
                                 primary_metric="mean_average_precision", compute="cpu", validation_data_size=0.25,
                                 experiment_name="od")
    job.set_limits(timeout_minutes=60, max_trials=10, max_concurrent_trials=2, trial_timeout_minutes=15)
    job.set_training_parameters(early_stopping=True, number_of_epochs=3, box_score_threshold=0.4)
    job.extend_search_space([
        SearchSpace(model_name=Choice(["yolov5"]), learning_rate=Uniform(0.0001, 0.01),
                    model_size=Choice(["small", "medium"])),
        SearchSpace(model_name=Choice(["fasterrcnn_resnet50_fpn"]), learning_rate=Uniform(0.0001, 0.001),
                    optimizer=Choice(["sgd", "adam", "adamw"]), min_size=Choice([600, 800])),
    ])
    job.set_sweep(sampling_algorithm="random", early_termination=BanditPolicy(evaluation_interval=2,
                                                                              slack_factor=0.2, delay_evaluation=6))
    yaml_text = f"""
task: image-object-detection
training_data: {data}
compute_target: cpu
primary_metric: mean_average_precision
validation_data_size: 0.25
limits: {{timeout_minutes: 60, max_trials: 10, max_concurrent_trials: 2, trial_timeout: 15}}
training_parameters: {{early_stopping: true, number_of_epochs: 3, box_score_thresh: 0.4}}
sweep:
  sampling_algorithm: random
  early_termination: {{type: bandit, evaluation_interval: 2, slack_factor: 0.2, delay_evaluation: 6}}
search_space:
  - model_name: "choice('yolov5')"
    learning_rate: uniform(0.0001, 0.01)
    model_size: "choice('small', 'medium')"
  - model_name: "choice('fasterrcnn_resnet50_fpn')"
    learning_rate: uniform(0.0001, 0.001)
    optimizer: "choice('sgd', 'adam', 'adamw')"
    min_size: choice(600, 800)
"""
    spec = job.experiment_config()
    same_experiment(spec, from_yaml(yaml_text, tmp_path))
    assert spec.fixed["box_score_thresh"] == 0.4 and spec.fixed["split_ratio"] == 0.25
    assert spec.fixed["device"] == "cpu"
    assert spec.trial_timeout_seconds == 15 * 60 and spec.space.is_conditional


def test_a_search_space_by_newer_names_is_renamed(data):
    job = image_classification(training_data=str(data))
    job.extend_search_space(SearchSpace(model_name=Choice(["resnet18"]), training_crop_size=Choice([224, 256])))
    job.set_limits(max_trials=2)
    spec = job.experiment_config()
    assert set(spec.space.subspaces[0]) == {"model_name", "train_crop_size"}
    job.extend_search_space(SearchSpace(model_name=Choice(["resnet34"]), training_crop_size=Choice([224]),
                                        train_crop_size=Choice([256])))
    with pytest.raises(ConfigError, match="search_space: .*training_crop_size is another name of train_crop_size"):
        job.experiment_config()


def test_jobs_read_mltable_folders_and_refuse_another_label_column(tmp_path):
    folder = tmp_path / "training-mltable-folder"
    folder.mkdir()
    (folder / "train_annotations.jsonl").write_text("{}\n")
    (folder / "MLTable").write_text("paths:\n  - file: ./train_annotations.jsonl\ntransformations:\n"
                                    "  - read_json_lines:\n      encoding: utf8\n")

    class Input:  # azure.ai.ml.Input(type=AssetTypes.MLTABLE, path=...)
        path = str(folder)

    job = image_classification(training_data=Input(), target_column_name="label")
    assert job.settings()["training_data"] == str(folder / "train_annotations.jsonl")
    with pytest.raises(ConfigError, match="target_column_name 'class'"):
        image_classification(training_data=str(folder), target_column_name="class")


# -- the per-trial time limit ----------------------------------------------------------------------------------
def test_a_child_past_the_trial_timeout_is_stopped_and_the_others_go_on(data):
    from jupyter_avml.sweep.sampling import make_sampler
    from jupyter_avml.sweep.scheduler import Scheduler
    from jupyter_avml.sweep.state import ExperimentState

    now = [1000.0]
    spec = parse_experiment({"task": "image-classification", "training_data": str(data), "model_name": "resnet18",
                             "sampling": "grid", "iterations": 3, "limits": {"trial_timeout": 2},
                             "search_space": {"learning_rate": "choice(0.01, 0.02, 0.03)"}})
    state = ExperimentState(name="unit", task=spec.task, primary_metric=spec.primary_metric)
    scheduler = Scheduler(spec, state, make_sampler("grid", spec.space, seed=0), clock=lambda: now[0])
    scheduler.begin(resume=False, concurrency=2)
    first = scheduler.next_child()
    scheduler.dispatched(first, resume_run=None)
    now[0] += 60
    second = scheduler.next_child()
    scheduler.dispatched(second, resume_run=None)
    now[0] += 59.9
    assert scheduler.check_trial_timeouts() == {}
    now[0] += 0.2
    requests = scheduler.check_trial_timeouts()
    assert list(requests) == [first.id]
    assert (requests[first.id].status, requests[first.id].reason) == ("stopped", "trial timeout (2 min)")
    assert scheduler.check_trial_timeouts() == {}  # asked once
    assert scheduler.ending is None and scheduler.more_to_launch()  # the experiment goes on
    now[0] += 60
    assert list(scheduler.check_trial_timeouts()) == [second.id]


@pytest.mark.parametrize("value", [0, -1, "10", True, float("nan"), 86401 * 60])
def test_trial_timeout_out_of_range_is_refused(data, value):
    with pytest.raises(ConfigError, match=r"trial_timeout_minutes must be a number of minutes in \(0, 86400\]"):
        parse_experiment({"task": "image-classification", "training_data": str(data), "trial_timeout_minutes": value})


# -- the settled differences, said where a user looks ----------------------------------------------------------
def test_the_dry_run_lists_what_the_cloud_would_refuse(data):
    config = AutoMLImageConfig(
        task="image-object-detection", training_data=str(data), iterations=4,
        hyperparameter_sampling=BayesianParameterSampling([{"model_name": choice("yolov5"),
                                                            "learning_rate": uniform(0.001, 0.01)},
                                                           {"model_name": choice("fasterrcnn_resnet18_fpn")}]),
        early_termination_policy=MedianStoppingPolicy(evaluation_interval=1), trial_timeout_minutes=30)
    settings = dict(config.dry_run(check_data=False).settings())
    beyond = settings["beyond the cloud system"]
    assert "bayesian sampling of a conditional space" in beyond
    assert "bayesian sampling with an early termination policy" in beyond
    assert "median of the OTHER runs' running averages" in beyond
    assert settings["trial timeout"] == "30m00s"
    plain = AutoMLImageConfig(task="image-classification", training_data=str(data),
                              hyperparameter_sampling=RandomParameterSampling({"seed": choice(1, 2)}), iterations=2,
                              early_termination_policy=TruncationSelectionPolicy(truncation_percentage=20))
    assert "beyond the cloud system" not in dict(plain.dry_run(check_data=False).settings())


def test_swapped_and_flat_boxes_say_how_to_fix_them(tmp_path):
    from PIL import Image

    from jupyter_avml.data.validate import validate_jsonl

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    rows = [{"image_url": "a.png", "label": [{"label": "can", "topX": 0.735, "topY": 0.406, "bottomX": 0.260,
                                              "bottomY": 0.701}]},
            {"image_url": "a.png", "label": [{"label": "can", "topX": 0.2, "topY": 0.4, "bottomX": 0.6,
                                              "bottomY": 0.4}]}]
    path = tmp_path / "od.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    swapped, flat = validate_jsonl(path, "image-object-detection", check_images=False).problems
    assert swapped.message == "topX must be less than bottomX"
    assert "the corners look swapped: topX is the smaller fraction (topX = xmin / width), so swap topX and " \
           "bottomX; skip_invalid: 1 trains on the other rows" in str(swapped)
    assert "the box has zero height: drop it, or give it a height (bottomY > topY)" in str(flat)


def test_fewer_than_ten_images_per_class_is_a_hint_not_an_error(tmp_path):
    from jupyter_avml.data.labels import FewImagesWarning
    from jupyter_avml.data.shapes import make_shapes
    from jupyter_avml.data.validate import validate_jsonl
    from jupyter_avml.sweep.preflight import check_data
    from jupyter_avml.workspace import Workspace

    small = make_shapes(tmp_path / "small", "image-classification", n=12, size=16, seed=1)
    report = validate_jsonl(small, "image-classification")
    assert report.ok and len(report.hints) == 1
    assert "3 classes have fewer than 10 images" in report.hints[0]
    assert "10 to 15 images per label is the recommended start" in report.format()
    assert not validate_jsonl(small, "image-classification", known_classes=report.classes).hints  # validation data
    spec = parse_experiment({"task": "image-classification", "training_data": str(small)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_data(spec, Workspace.resolve(tmp_path / "ws"))
    assert [w.category for w in caught] == [FewImagesWarning]
    enough = make_shapes(tmp_path / "enough", "image-classification", n=45, size=16, seed=1)
    assert not validate_jsonl(enough, "image-classification").hints


# -- Experiment: a named group of runs -------------------------------------------------------------------------
def test_each_submission_is_a_new_run_of_the_experiment(data, tmp_path, monkeypatch):
    from jupyter_avml.automl import Experiment, Workspace
    from jupyter_avml.sweep.experiment import ExperimentHandle
    from jupyter_avml.sweep.folder import ExperimentFolder
    from jupyter_avml.sweep.state import ExperimentState

    def submit_without_a_driver(sweep, spec, *, resume=False):  # the sweep's submit, minus its processes
        ExperimentFolder.of(sweep.workspace.root, sweep.name).write_state(ExperimentState(
            name=sweep.name, task=spec.task, primary_metric=spec.primary_metric, created=len(names)))
        names.append(sweep.name)
        return ExperimentHandle(sweep.name, sweep.workspace)

    names: list[str] = []
    monkeypatch.setattr("jupyter_avml.sweep.experiment.Experiment.submit", submit_without_a_driver)
    ws = Workspace.from_config(tmp_path / "ws")
    config = AutoMLImageConfig(task="image-classification", training_data=str(data))
    experiment = Experiment(ws, name="shapes")
    runs = [experiment.submit(config) for _ in range(3)]
    Experiment(ws, "shapes-x").submit(config)  # another experiment, not a run of "shapes"
    assert [run.id for run in runs] == names[:3] == ["shapes", "shapes-2", "shapes-3"]
    assert [run.id for run in experiment.get_runs()] == ["shapes", "shapes-2", "shapes-3"]
    assert experiment.submit({"task": "image-classification", "training_data": str(data)}).id == "shapes-4"
    with pytest.raises(ConfigError, match="name is required"):
        Experiment(ws)


def test_positional_arguments_follow_the_cloud_signature(data):
    sampling = GridParameterSampling({"model_name": choice("resnet18", "resnet34")})
    policy = BanditPolicy(slack_factor=0.1)
    config = AutoMLImageConfig(ImageTask.IMAGE_CLASSIFICATION, "local", str(data), sampling, 2, 1, 3, policy,
                               str(data), ["--seed", 5])
    spec = config.experiment_config
    assert (spec.sampling, spec.iterations, spec.max_concurrent_iterations, spec.budget_seconds) == \
        ("grid", 2, 1, 3 * 3600.0)
    assert spec.policy == policy and spec.fixed["validation_data"] == str(data) and spec.fixed["seed"] == 5


# -- child runs, read from their files ------------------------------------------------------------------------
def test_child_metrics_are_lists_per_epoch_as_the_cloud_returns_them(tmp_path):
    from jupyter_avml.automl import AutoMLRun
    from jupyter_avml.sweep.experiment import ExperimentHandle
    from jupyter_avml.sweep.folder import ExperimentFolder
    from jupyter_avml.sweep.state import ChildState, ExperimentState
    from jupyter_avml.workspace import Workspace

    ws = Workspace.resolve(tmp_path / "ws")
    run_id = "b" * 32
    outputs = ws.runs_dir / run_id / "outputs"
    outputs.mkdir(parents=True)
    (outputs / "model.pt").write_bytes(b"weights")
    (outputs / "metrics.json").write_text(json.dumps({"per_epoch": [
        {"epoch": 1, "train_loss": 1.5, "learning_rate": 0.01, "metrics": {"accuracy": 0.5, "log_loss": 1.1}},
        {"epoch": 2, "train_loss": 1.2, "learning_rate": 0.005, "metrics": {}},  # not evaluated
        {"epoch": 3, "train_loss": 0.9, "learning_rate": 0.001, "metrics": {"accuracy": 0.75, "log_loss": 0.7}},
    ]}))
    running = ChildState(id=1, params={"model_name": "resnet34", "learning_rate": 0.02}, model_name="resnet34",
                         status="running", metric_history=[[1, 0.25]])
    ExperimentFolder.of(ws.root, "exp").write_state(ExperimentState(
        name="exp", task="image-classification", primary_metric="accuracy", status="running", best_child=0,
        children=[ChildState(id=0, params={"model_name": "resnet18"}, model_name="resnet18", status="completed",
                             run_id=run_id, best_value=0.75, best_epoch=3), running]))
    parent = AutoMLRun(ExperimentHandle("exp", ws))
    done, going = parent.get_children()
    assert done.get_metrics() == {"train_loss": [1.5, 1.2, 0.9], "learning_rate": [0.01, 0.005, 0.001],
                                  "accuracy": [0.5, 0.75], "log_loss": [1.1, 0.7]}
    assert done.get_metrics("accuracy") == {"accuracy": [0.5, 0.75]} and done.get_metrics("nope") == {}
    assert going.get_metrics() == {"accuracy": 0.25}  # no outputs yet: the state's primary metric
    assert done.properties == {"model_name": "resnet18", "score": 0.75, "primary_metric": "accuracy",
                               "iteration": 0, "status": "completed", "best_epoch": 3,
                               "hyperparameters": {"model_name": "resnet18"}, "run_id": run_id}
    assert going.id == "exp_1" and going.properties["hyperparameters"]["learning_rate"] == 0.02
    assert done.get_file_names() == ["outputs/metrics.json", "outputs/model.pt"]
    copied = done.download_files(prefix="outputs/", output_directory=tmp_path / "copy", append_prefix=False)
    assert sorted(Path(p).name for p in copied) == ["metrics.json", "model.pt"]
    assert (tmp_path / "copy" / "model.pt").read_bytes() == b"weights"
