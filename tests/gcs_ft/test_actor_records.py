"""What the GCS keeps of an actor in a durable store: a typed ``ActorTableData`` message per
actor (never a pickle), with its state and its death cause, read back by the next GCS."""

from __future__ import annotations

import asyncio

import pytest

import microray as ray
from microray import config as config_mod
from microray.gcs.actor_manager import T_ACTORS
from microray.gcs.actor_record import ActorState, DeathKind, decode
from microray.gcs.server import open_store
from microray.util.state import list_actors

from .helpers import wait_for

pytestmark = pytest.mark.slow


@ray.remote
class Keeper:
    def ping(self):
        return "pong"


async def _stored_actor_records(store) -> dict[bytes, bytes]:
    opened = await open_store(config_mod.Config(gcs_store=store.name, gcs_store_options=store.options))
    try:
        return await opened.get_all(T_ACTORS)
    finally:
        await opened.close()


def test_actor_records_are_stored_as_typed_messages(make_cluster, store):
    make_cluster(gcs_store=store.name, gcs_store_options=store.options, namespace="ft")
    kept = Keeper.options(name="kept", lifetime="detached", max_restarts=2).remote()
    killed = Keeper.remote()
    assert ray.get([kept.ping.remote(), killed.ping.remote()], timeout=60) == ["pong", "pong"]
    ray.kill(killed)
    wait_for(lambda: {a["actor_id"]: a["state"] for a in list_actors()}[killed._actor_id] == "DEAD",
             timeout=30, what="the killed actor to be DEAD")

    raw = asyncio.run(_stored_actor_records(store))
    assert set(raw) == {kept._actor_id.encode(), killed._actor_id.encode()}
    assert not any(value.startswith(b"\x80") for value in raw.values()), "a pickled actor record"
    records = {key.decode(): decode(value) for key, value in raw.items()}
    alive = records[kept._actor_id]
    assert (alive.state, alive.name, alive.namespace, alive.detached, alive.max_restarts) == (
        ActorState.ALIVE, "kept", "ft", True, 2)
    assert alive.class_name.endswith("Keeper") and alive.address and alive.pid and alive.creation_spec
    dead = records[killed._actor_id]
    assert dead.state is ActorState.DEAD and dead.killed
    assert dead.death is not None and dead.death.kind is DeathKind.KILLED
    assert dead.death.message == "killed by microray.kill()" and not dead.address
