"""The runtime envs of one node: their packages unpacked in the node's session folder.

A lease for a runtime env with ``working_dir`` / ``py_modules`` packages waits here
until each package is unpacked on this node (``<session>/runtime_resources/<sha1>/``).
Each package is fetched from the GCS KV and unpacked once per node: concurrent leases
wait on one unpack, and ``runtime_env.ensure_unpacked`` locks and renames into place,
so even another process of the node (the dashboard starting a job's driver) never
unpacks it twice. Workers of the env then start in the unpacked working_dir with the
packages on ``sys.path`` (``setup``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

import structlog

from microray import runtime_env
from microray.protocol import gcs_pb2

log = structlog.get_logger(__name__)


class RuntimeEnvs:
    """Prepare runtime envs on this node (``prepare``) and say how their workers start
    (``setup``). ``gcs()`` is the raylet's GCS stub (packages are read from its KV)."""

    def __init__(self, session_dir: str, gcs: Callable[[], Any]) -> None:
        self.session_dir = session_dir
        self._gcs = gcs
        self.ready: dict[str, runtime_env.WorkerSetup] = {}  # env key -> how its workers start
        self._unpacking: dict[str, asyncio.Future] = {}  # package uri -> its unpack

    async def prepare(self, env_key: str) -> str:
        """Make ``env_key``'s packages present on this node; "" when done, else why not."""
        if not env_key or env_key in self.ready:
            return ""
        env = json.loads(env_key)
        try:
            for uri in runtime_env.package_uris(env):
                await self._unpack(uri)
        except Exception as exc:  # noqa: BLE001 -- said to the lease's owner
            log.error("runtime_env_setup_failed", error=repr(exc))
            return f"the runtime_env could not be set up on this node ({self.session_dir}): {exc}"
        self.ready[env_key] = runtime_env.worker_setup(self.session_dir, env)
        return ""

    def setup(self, env_key: str) -> runtime_env.WorkerSetup:
        return self.ready.get(env_key) or runtime_env.WorkerSetup(None, ())

    async def _unpack(self, uri: str) -> None:
        fut = self._unpacking.get(uri)
        if fut is None:
            fut = self._unpacking[uri] = asyncio.ensure_future(self._fetch_and_unpack(uri))
        try:
            await asyncio.shield(fut)
        except Exception:
            if self._unpacking.get(uri) is fut:
                del self._unpacking[uri]  # a later lease tries again
            raise

    async def _kv_get(self, key: bytes) -> bytes | None:
        reply = await self._gcs().KvGet(gcs_pb2.KvGetRequest(ns=runtime_env.KV_NS, key=key), timeout=60)
        return reply.value if reply.found else None

    async def _fetch_and_unpack(self, uri: str) -> None:
        if os.path.isdir(runtime_env.local_dir(self.session_dir, uri)):
            return
        meta_key, chunk_key = runtime_env.chunk_keys(uri)
        count = runtime_env.chunk_count(uri, await self._kv_get(meta_key))
        chunks = [await self._kv_get(chunk_key(i)) for i in range(count)]
        data = runtime_env.assemble(uri, chunks)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, runtime_env.ensure_unpacked, self.session_dir, uri, lambda: data)
