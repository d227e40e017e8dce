"""check_shared_storage with Ray's node list and tasks replaced (multi-node on real Ray:
tests/integration/test_multinode.py)."""
import pytest
import ray

from seglab.errors import ConfigError
from seglab.platform.cluster.storage import check_shared_storage


def _node(i, alive=True):
    return {"NodeID": f"{i:02d}" * 28, "NodeManagerAddress": f"10.0.0.{i}", "Alive": alive}


@pytest.fixture
def nodes(monkeypatch):
    """``nodes(list, blind=set)``: Ray's node list; each node's task runs here, and a node whose
    address is in ``blind`` cannot see the storage path."""
    def install(found, blind=()):
        class Task:
            def __init__(self, fn, node_id=None):
                self.fn, self.node_id = fn, node_id

            def options(self, scheduling_strategy):
                assert scheduling_strategy.soft is False  # each node must run its own check
                return Task(self.fn, scheduling_strategy.node_id)

            def remote(self, *args):
                node = next(n for n in found if n["NodeID"] == self.node_id)
                return False if node["NodeManagerAddress"] in blind else self.fn(*args)

        monkeypatch.setattr(ray, "nodes", lambda: found)
        monkeypatch.setattr(ray, "remote", lambda **opts: Task)
        monkeypatch.setattr(ray, "get", lambda refs, timeout=None: refs)

    return install


def test_one_node_always_passes_and_writes_nothing(nodes, tmp_path):
    nodes([_node(1), _node(2, alive=False)])
    check_shared_storage(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_every_node_reads_and_writes_the_path(nodes, tmp_path):
    nodes([_node(1), _node(2), _node(3)])
    check_shared_storage(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe files are removed


def test_a_node_that_cannot_see_the_path_is_named(nodes, tmp_path):
    nodes([_node(1), _node(2), _node(3)], blind={"10.0.0.3"})
    with pytest.raises(ConfigError, match=rf"storage path {tmp_path} is not shared: node\(s\) 10.0.0.3 \(030303030303\) "
                                          r"cannot read or write it"):
        check_shared_storage(tmp_path)
    assert list(tmp_path.iterdir()) == []
