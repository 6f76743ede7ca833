"""A real local multi-node Ray cluster on 127.0.0.1 for the scale tests, started once per module that asks.

The cluster is the README's own example ("Scaling out"): its first code cell runs here as written, so the
documented way to try a Ray sweep on one machine is the one the tests use. ``ray.cluster_utils.Cluster`` (Ray's
test utility) starts a head node and a worker node as processes of this test process, one CPU each, both on
loopback. Ray writes only under a short temporary folder (``$RAY_TMPDIR``: Unix socket paths are limited to about
100 characters), usage statistics are off, the dashboard is not started, and the cluster is shut down at the
end of the module whatever happened (the README's last cell).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass

import pytest

from tests.conftest import REPO

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def scaling_out_cells() -> list[str]:
    """The Python cells of the README's "Scaling out" section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Scaling out"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@dataclass
class LocalCluster:
    """The README's cluster (``cluster``) and its GCS ``address``."""

    cluster: object
    address: str

    @property
    def workers(self) -> list:
        return list(self.cluster.worker_nodes)

    def kill_node(self, node) -> None:
        """SIGKILL a worker node's processes (raylet, its workers): a machine that died."""
        self.cluster.remove_node(node, allow_graceful=False)


@pytest.fixture(scope="module")
def ray_cluster():
    """The README's two-node cluster; skips when Ray is not installed (an optional extra)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'jupyter_avml[ray]')")
    start, *_, stop = scaling_out_cells()
    temp = tempfile.mkdtemp(prefix="avml-ray-", dir="/tmp")
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**RAY_ENV, "RAY_TMPDIR": temp}.items():
            patch.setenv(key, value)
        patch.delenv("RAY_ADDRESS", raising=False)  # the README's cell sets it; restored at the end
        try:
            exec(compile(start, "README.md (Scaling out, cell 1)", "exec"), namespace)
            cluster = namespace["cluster"]
            cluster.wait_for_nodes(timeout=60)
            yield LocalCluster(cluster, cluster.address)
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            if "cluster" in namespace:
                exec(compile(stop, "README.md (Scaling out, last cell)", "exec"), namespace)
            shutil.rmtree(temp, ignore_errors=True)
