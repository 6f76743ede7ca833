"""A real local multi-node Ray cluster on 127.0.0.1 for the scale tests, started once per module that asks.

``ray.cluster_utils.Cluster`` (Ray's own test utility) starts a head node and worker nodes as processes of
this test process, each a raylet with its own CPUs, all listening on loopback. Ray writes only under a short
temporary folder (Unix socket paths are limited to about 100 characters), usage statistics are off, and
the dashboard is not started. The cluster is shut down at the end of the module whatever happened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import pytest

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0",
           # A cluster on 127.0.0.1: Ray would otherwise swap loopback addresses for the machine's own.
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
NODE_ARGS = dict(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=80 * 1024 * 1024,
                 include_log_monitor=False)


@dataclass
class LocalCluster:
    """The cluster (``cluster``), its GCS ``address``, and the worker nodes added after the head."""

    cluster: object
    address: str
    workers: list = field(default_factory=list)

    def add_node(self, **resources):
        node = self.cluster.add_node(**{**NODE_ARGS, **resources})
        self.cluster.wait_for_nodes(timeout=60)
        self.workers.append(node)
        return node

    def kill_node(self, node) -> None:
        """SIGKILL a worker node's processes (raylet, its workers): a machine that died."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and one worker node, one CPU each; skips when Ray is not installed (an optional extra)."""
    if not _ray_available():
        pytest.skip("Ray is not installed (pip install 'jupyter_avml[ray]')")
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="avml-ray-", dir="/tmp")
    os.makedirs(os.path.join(temp, "ray"))
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**RAY_ENV, "RAY_TMPDIR": temp}.items():
            patch.setenv(key, value)
        cluster = None
        try:
            cluster = Cluster(initialize_head=True, connect=False,
                              head_node_args={**NODE_ARGS, "include_dashboard": False,
                                              "temp_dir": os.path.join(temp, "ray")})
            local = LocalCluster(cluster, cluster.address)
            local.add_node()
            yield local
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            if cluster is not None:
                cluster.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
