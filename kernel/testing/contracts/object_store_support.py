"""What ``ObjectStoreContract`` builds its tests from: store descriptions a child process can
rebuild, byte patterns, mapping inspection, and the child-process entry point
(``python -m microray.testing.contracts.object_store_support``)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from microray.interfaces.object_store import ObjectStore
from microray.registrations import ObjectStoreRegistration

MiB = 1 << 20
DEFAULT_CAPACITY = 256 * MiB
CHILD_TIMEOUT = 120.0
SHM_ROOT = "/dev/shm"


# --------------------------------------------------------------------------- store descriptions
@dataclass(frozen=True)
class StoreSpec:
    """Everything a process needs to open an instance of a namespace."""

    factory: str  # "module:qualname"
    namespace: str
    capacity: int
    spill_dir: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self, **extra: Any) -> ObjectStore:
        """Import the factory and build an instance."""
        module, _, qualname = self.factory.partition(":")
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
        return target(self.namespace, self.capacity, self.spill_dir, **self.options, **extra)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "StoreSpec":
        return cls(**json.loads(text))


class StoreFactory:
    """Opens instances of the backend under test and cleans every namespace up afterwards."""

    def __init__(
        self,
        registration: ObjectStoreRegistration,
        workdir: str,
        capacity_options: Callable[[int], dict[str, Any]],
        base_options: dict[str, Any] | None = None,
    ) -> None:
        self.registration = registration
        self.spill_dir = os.path.join(workdir, "spill")
        self.namespace = f"ct-{uuid.uuid4().hex[:12]}"
        self.capacity_options = capacity_options
        self.base_options = dict(base_options or {})
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._opened: list[tuple[ObjectStore, StoreSpec]] = []
        factory = registration.factory
        self._factory_path = f"{factory.__module__}:{factory.__qualname__}"

    def spec(self, *, capacity: int | None = None, namespace: str | None = None, **options: Any) -> StoreSpec:
        """The description of an instance (validated options, defaults filled in)."""
        capacity = capacity or DEFAULT_CAPACITY
        given = {**self.base_options, **self.capacity_options(capacity), **options}
        validated = self.registration.validate_options("object_store", given)
        return StoreSpec(
            factory=self._factory_path,
            namespace=namespace or self.namespace,
            capacity=capacity,
            spill_dir=self.spill_dir,
            options=validated,
        )

    def __call__(self, *, capacity: int | None = None, namespace: str | None = None, **options: Any) -> ObjectStore:
        spec = self.spec(capacity=capacity, namespace=namespace, **options)
        store = spec.open(on_event=self._record)
        self._opened.append((store, spec))
        return store

    def _record(self, kind: str, info: dict[str, Any]) -> None:
        self.events.append((kind, dict(info)))

    def cleanup(self) -> None:
        """Close every instance, destroy every namespace, and check nothing is left."""
        for store, _spec in self._opened:
            store.close()
        specs = {spec.namespace: spec for _store, spec in self._opened}
        for spec in specs.values():
            spec.open().destroy()
        left = [name for name in _shm_entries() for ns in specs if ns in name]
        assert not left, f"destroy() left entries in {SHM_ROOT}: {left}"
        files = files_under(self.spill_dir)
        assert not files, f"destroy() left files in the spill folder: {files}"


def files_under(folder: str) -> list[str]:
    """Every file below ``folder`` (the spill folder: spill copies, environments)."""
    return [os.path.join(root, name) for root, _dirs, names in os.walk(folder) for name in names]


def _shm_entries() -> list[str]:
    try:
        return os.listdir(SHM_ROOT)
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- helpers
def pattern(size: int, seed: int) -> bytes:
    """``size`` reproducible, non-repeating-looking bytes (fast for large sizes)."""
    if size == 0:
        return b""
    block = bytes((seed * 131 + i * 7 + (i >> 8)) & 0xFF for i in range(4093))
    reps = size // len(block) + 1
    return (block * reps)[:size]


def crc(data: Any) -> int:
    return zlib.crc32(memoryview(data).cast("B"))


def buffer_address(view: memoryview) -> int:
    """The address of a buffer's first byte (via numpy, as a user would see it)."""
    np = pytest.importorskip("numpy")
    return int(np.frombuffer(view, np.uint8).__array_interface__["data"][0])


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/self/maps."""

    start: int
    end: int
    perms: str
    offset: int
    path: str

    def file_offset(self, address: int) -> int:
        return self.offset + address - self.start


def mapping_of(address: int) -> Mapping | None:
    """The mapping of this process that contains ``address``."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                path = parts[5].strip() if len(parts) > 5 else ""
                return Mapping(start, end, parts[1], int(parts[2], 16), path)
    return None


def run_child(spec: StoreSpec, op: str, **args: Any) -> subprocess.CompletedProcess[str]:
    """Run one operation against the namespace in a fresh interpreter."""
    payload = json.dumps({"spec": asdict(spec), "op": op, "args": args})
    return subprocess.run(
        [sys.executable, "-m", "microray.testing.contracts.object_store_support", payload],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )


def start_child(spec: StoreSpec, op: str, **args: Any) -> subprocess.Popen[str]:
    payload = json.dumps({"spec": asdict(spec), "op": op, "args": args})
    return subprocess.Popen(
        [sys.executable, "-m", "microray.testing.contracts.object_store_support", payload],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _child_main(argv: list[str]) -> int:
    """Entry point of the child processes (see ``run_child``)."""
    request = json.loads(argv[0])
    spec = StoreSpec(**request["spec"])
    args = request["args"]
    store = spec.open()
    oid = bytes.fromhex(args["object_id"])
    op = request["op"]
    if op == "read":
        view = store.get(oid)
        if view is None:
            print(json.dumps({"found": False}))
            return 2
        result: dict[str, Any] = {"found": True, "crc": crc(view), "size": view.nbytes}
        if view.nbytes:
            try:
                found = mapping_of(buffer_address(view))
                result["mapping"] = found.path if found else None
            except BaseException:  # noqa: BLE001 -- numpy is optional in a child
                result["mapping"] = None
        print(json.dumps(result))
        sys.stdout.flush()
        return 0 if result["crc"] == args.get("crc", result["crc"]) else 3
    if op == "put":
        store.put(oid, pattern(args["size"], args["seed"]))
        store.close()
        return 0
    if op == "put_many":  # object ids <object_id>-0 .. -<count-1>, seeds seed+i
        for i in range(args["count"]):
            data = pattern(args["size"], args["seed"] + i)
            store.put(oid + b"-%d" % i, data)
            back = store.get(oid + b"-%d" % i)
            if back is None or crc(back) != crc(data):
                print(json.dumps({"bad": i}))
                return 3
            del back
        store.close()
        return 0
    if op == "crash_writer":
        buf = store.create(oid, args["size"])
        half = args["size"] // 2
        buf[:half] = pattern(half, 1)
        sys.stdout.flush()
        os._exit(1)  # die before seal, without any cleanup
    raise SystemExit(f"unknown op {op!r}")


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
