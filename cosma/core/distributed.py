"""Ray, the one way the project runs beyond one machine (``cosma compare --ray``, ``mallocgame
train --ray``): joining or starting a Ray cluster, and leaving it as found.

``--ray`` alone (``LOCAL``) starts a local Ray on this machine with a given number of CPUs;
``--ray auto`` joins the cluster this machine belongs to (``ray start --head`` was run), and
``--ray ray://head:10001`` a remote cluster through Ray Client. On a cluster, every node
needs this project installed (``pip install -e .``: the solver registry reads its entry
points) and, for the training, the same torch.

Ray is imported only here and only when asked for: the project runs and tests without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cosma.core.errors import UsageError

LOCAL = "local"  # what a bare ``--ray`` stands for: a Ray started here, shut down after the run


def import_ray():
    """``ray``, or a usage error that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise UsageError(f'--ray needs Ray: pip install "ray>=2.40" ({e})') from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[object]:
    """Ray, initialized for the duration of the block: a Ray already initialized in this
    process is used as it is (and left running); otherwise a local one with ``num_cpus`` CPUs
    (``address`` None, "" or ``LOCAL``) or the cluster at ``address`` is joined, and shut down
    (left, for a cluster) when the block ends, Ctrl-C included."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if not address or address == LOCAL:
        ray.init(num_cpus=max(1, num_cpus), include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


__all__ = ["LOCAL", "import_ray", "ray_session"]
