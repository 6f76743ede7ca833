"""The executor settings (``executor``, ``ray_address``, ``cpus_per_child``, ``gpus_per_child``,
``child_retries``): one parser behind the four doors, slots on this machine, joining a cluster that is not
there. No cluster and no training here: a second each."""

from __future__ import annotations

import time

import pytest

from jupyter_avml.errors import ConfigError
from jupyter_avml.sweep.config import parse_experiment, read_experiment
from jupyter_avml.sweep.executor_config import ExecutorSettings
from jupyter_avml.sweep.slots import plan_slots


@pytest.fixture
def base(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    return {"task": "image-classification", "training_data": str(data), "model_name": "resnet18"}


def test_defaults_and_a_ray_experiment(base):
    assert parse_experiment(base).executor == ExecutorSettings()
    spec = parse_experiment({**base, "executor": "Ray", "gpus_per_child": 0.5, "cpus_per_child": 2,
                             "child_retries": 1, "ray_address": "ray://head.example:10001"})
    assert spec.executor == ExecutorSettings("ray", "ray://head.example:10001", 2, 0.5, 1)
    # experiment.yaml (what the driver reads) gives the same settings back
    assert parse_experiment(spec.raw).executor == spec.executor
    assert parse_experiment({**base, "executor": "ray"}).executor.ray_address == "auto"


@pytest.mark.parametrize("settings, needle", [
    ({"executor": "kubernetes"}, "executor must be one of local, ray, got 'kubernetes'"),
    ({"ray_address": "auto"}, "ray_address applies to executor: ray (the executor is local)"),
    ({"child_retries": 1}, "child_retries applies to executor: ray"),
    ({"executor": "ray", "ray_address": "http://head:8265"}, "ray_address must be auto, HOST:PORT"),
    ({"executor": "ray", "ray_address": "head:70000"}, "ray_address must be auto, HOST:PORT"),
    ({"executor": "ray", "child_retries": 2}, "child_retries must be 0 or 1"),
    ({"executor": "ray", "cpus_per_child": 0}, "cpus_per_child must be a number in (0, 1024]"),
    ({"executor": "ray", "gpus_per_child": 1.5}, "gpus_per_child above 1 must be a whole number"),
    ({"executor": "ray", "cpu_slots": 2}, "cpu_slots is for executor: local"),
    ({"executor": "ray", "device": "cuda:1"}, "device is 'cuda:1': with executor: ray"),
    ({"device": "cuda", "gpus_per_child": 0}, "device is 'cuda' but gpus_per_child is 0"),
    ({"gpus_per_child": 0.5}, "a fraction of a GPU needs executor: ray"),
    ({"cpus_per_child": 2, "cpu_slots": 2}, "give cpu_slots or cpus_per_child, not both"),
])
def test_refused_settings_are_named(base, settings, needle):
    with pytest.raises(ConfigError) as caught:
        parse_experiment({**base, **settings})
    assert needle in str(caught.value)


def test_every_door_reads_the_settings(base, tmp_path, monkeypatch):
    """YAML file (with the line of a bad value), ``avml sweep --set``, ``%%avml`` cells, the Python API."""
    import yaml

    from jupyter_avml.cli.sweep import load_experiment_config
    from jupyter_avml.magics._magic import AvmlMagics

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**base, "executor": "ray", "cpus_per_child": 2}, sort_keys=False))
    assert read_experiment(path).executor.cpus_per_child == 2
    spec = load_experiment_config(str(path), ["gpus_per_child=1", "ray_address=10.0.0.5:6379"])
    assert (spec.executor.gpus_per_child, spec.executor.ray_address) == (1, "10.0.0.5:6379")
    cell = yaml.safe_dump({**base, "executor": "ray"}, sort_keys=False)
    assert AvmlMagics._parse_cell(cell, ["child_retries=1"]).executor.child_retries == 1
    assert parse_experiment({**base, "executor": "ray"}).executor.is_ray

    path.write_text(yaml.safe_dump({**base, "executor": "ray", "cpus_per_child": -1}, sort_keys=False))
    with pytest.raises(ConfigError, match=rf"{path}:5: cpus_per_child must be a number"):
        read_experiment(path)


def test_local_slots_group_gpus_and_share_cores():
    two = plan_slots("auto", gpus=["0", "1", "2", "3", "4"], cores=16, gpus_per_child=2)
    assert [(s.gpu, s.threads) for s in two] == [("0,1", 8), ("2,3", 8)]  # GPU 4 stays unused
    assert two[1].env()["CUDA_VISIBLE_DEVICES"] == "2,3" and two[0].gpu_count == 2
    assert two[0].child_values({"device": "cuda:0"}) == {"device": "cuda", "cpu_threads": 8, "distributed": 1}
    assert "distributed" not in plan_slots("auto", gpus=["0"], cores=4)[0].child_values({})
    with pytest.raises(ConfigError, match="gpus_per_child is 3 but this machine has 2 GPU"):
        plan_slots("auto", gpus=["0", "1"], cores=4, gpus_per_child=3)
    assert [s.kind for s in plan_slots("auto", gpus=["0", "1"], cores=4, gpus_per_child=0)] == ["cpu"]
    assert [(s.kind, s.threads) for s in plan_slots("cpu", cores=8, cpus_per_child=2)] == [("cpu", 2)] * 4
    assert [s.threads for s in plan_slots("cpu", cores=2, cpus_per_child=4)] == [4]


def test_the_driver_plans_local_slots_from_the_settings(base):
    from jupyter_avml.sweep.driver import plan_sweep_slots

    spec = parse_experiment({**base, "device": "cpu", "cpus_per_child": 1})
    slots = plan_sweep_slots(spec)
    assert slots and all(s.kind == "cpu" and s.threads == 1 for s in slots)


def test_joining_a_cluster_that_is_not_there_fails_in_seconds(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import socket

    from jupyter_avml.sweep.ray_executor import RayClusterError, connect

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RayClusterError, match=rf"no Ray cluster answers at 127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no address file of a `ray start` here
    with pytest.raises(RayClusterError, match="ray_address is auto but no Ray cluster was found"):
        connect("auto")
    assert time.monotonic() - started < 15


def test_what_a_ray_child_reserves_and_how_many_fit(base, monkeypatch):
    """Defaults from the cluster's nodes (no cluster needed: the node list is given)."""
    pytest.importorskip("ray")
    from jupyter_avml.sweep import ray_executor

    def node(cpus, gpus=0):
        return {"Alive": True, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}

    nodes = [node(8, 2), node(4), {"Alive": False, "Resources": {"CPU": 64, "GPU": 8}}]
    monkeypatch.setattr(ray_executor, "_alive_nodes", lambda ray: [n for n in nodes if n["Alive"]])
    ray_spec = {**base, "executor": "ray"}
    assert ray_executor.child_resources(parse_experiment(ray_spec)) == (1, 1)  # the cluster has GPUs
    assert ray_executor.child_resources(parse_experiment({**ray_spec, "device": "cpu"})) == (1, 0)
    assert ray_executor.child_resources(parse_experiment({**ray_spec, "cpus_per_child": 2,
                                                          "gpus_per_child": 0.5})) == (2, 0.5)
    assert ray_executor._capacity(None, 1, 1) == 2      # GPUs bound it: two on the first node, none on the second
    assert ray_executor._capacity(None, 2, 0.5) == 4    # 4 half-GPUs (8 CPUs) on the first node; GPUs needed
    assert ray_executor._capacity(None, 2, 0) == 6      # CPUs only: 4 + 2
