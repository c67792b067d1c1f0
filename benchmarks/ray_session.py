"""How every benchmark starts Ray: the cluster at ``address`` (or ``RAY_ADDRESS``), else a local Ray of its own.

A local start passes ``address="local"``, so a cluster record that ``ray start``
left in /tmp/ray (perhaps of a cluster stopped long ago) is never joined by
accident, and runs without the token notice, as the tests do.
"""

from __future__ import annotations

import os
import time


def start_ray(address: str | None = None) -> float:
    """Start (or connect to) Ray unless it is running; the seconds that took (0.0 if it was running)."""
    import ray

    if ray.is_initialized():
        return 0.0
    started = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    return time.perf_counter() - started
