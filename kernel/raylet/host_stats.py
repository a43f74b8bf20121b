"""The host a raylet runs on, measured with each heartbeat: CPU busy percent, memory and
the disk that holds the session folder. The GCS keeps the latest figures in the node
table (``NodeInfo.host``), so the dashboard and the state API show every node's machine."""

from __future__ import annotations

import os
import time

import psutil
import structlog

from microray.protocol import common_pb2

log = structlog.get_logger(__name__)


class HostStats:
    """Reads the host's figures; ``sample()`` is cheap (a few /proc reads and a statvfs)."""

    def __init__(self, disk_path: str) -> None:
        self.disk_path = disk_path
        self.cpu_count = psutil.cpu_count() or 1
        psutil.cpu_percent(interval=None)  # the first call only starts the measuring window

    def sample(self) -> common_pb2.HostStats:
        """The host now; a figure the OS does not give is left 0 (never an error)."""
        out = common_pb2.HostStats(cpu_count=self.cpu_count, disk_path=self.disk_path, sampled_at=time.time())
        try:
            out.cpu_percent = psutil.cpu_percent(interval=None)
            mem = psutil.virtual_memory()
            out.mem_total, out.mem_used = mem.total, mem.total - mem.available
            disk = psutil.disk_usage(self.disk_path)
            out.disk_total, out.disk_used = disk.total, disk.used
            out.load_avg_1m = os.getloadavg()[0]
        except (OSError, psutil.Error) as exc:
            log.debug("host_stats_unavailable", error=str(exc))
        return out
