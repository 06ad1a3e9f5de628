"""Verified reads: every chunk checksummed and present, damage reported by store, array and chunk.

Every array gexplain writes carries Zarr v3's ``crc32c`` codec after ``zstd``
(:func:`array_encoding`), and every chunk is written, including chunks that hold only the fill
value (``write_empty_chunks``). So, in an array with the codec, a chunk that is not there is
damage, not "fill value". Stores are opened through :class:`GuardedStore`, a zarr store wrapper
that checks each chunk it reads: absent (where presence is required), too short, or failing its
checksum raises :class:`~gexplain.storage.errors.DamagedStoreError` naming the store, the array,
the chunk and the stage that rewrites it -- instead of zeros, NaN or a bare "Zstd decompression
error". Arrays of older stores (no ``crc32c``) read as before; :func:`verify` reports them as
unverifiable.

The same wrapper fences writes: before each chunk it stores, it checks (without I/O) that this
process's leases on the store are still confirmed (:func:`gexplain.storage.lease.check_unexpired`).

``gexplain verify STORE`` runs :func:`verify` over every array and records the summary in the
store (``<store>/integrity/zarr.json``), which ``gexplain info`` shows (:func:`last_verification`).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import google_crc32c
import zarr
from gexplain.storage.errors import DamagedStoreError
from gexplain.storage.lease import check_unexpired
from gexplain.storage.nodes import ZARR_JSON, read_group, write_group
from gexplain.storage.paths import is_local, join, normalize_url
from zarr.abc.store import ByteRequest, Store
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import FsspecStore, LocalStore, WrapperStore

CHECKSUM_CODEC = "crc32c"
INTEGRITY_GROUP = "integrity"
WRITE_CONFIG: dict[str, Any] = {"write_empty_chunks": True}
_CHUNK_KEY = re.compile(r"^(?P<array>(?:.+/)?[^/]+)/c(?P<index>(?:/\d+)+)$")

# Which command rewrites an array (glob on its path inside the store), first match wins.
REWRITTEN_BY: tuple[tuple[str, str], ...] = (
    ("results/explain/*", "gexplain explain (with --overwrite)"),
    ("results/de/*", "gexplain de (with --overwrite)"),
    ("results/evaluate/*", "gexplain evaluate (with --overwrite)"),
    ("results/*", "the stage that wrote this result (with --overwrite)"),
    ("models/*", "gexplain train (with --overwrite)"),
    ("cpm", "gexplain normalize"),
    ("norm_counts", "gexplain normalize"),
    ("size_factors", "gexplain normalize"),
    ("log_*", "gexplain normalize"),
    ("tpm", "gexplain normalize (or the ingest/simulate that created the store)"),
)
_BOOKKEEPING = ("leases", "ledger", INTEGRITY_GROUP)  # groups of records, never arrays
_CREATOR = "the gexplain ingest or simulate that created the store (with --overwrite)"


def codecs() -> tuple[ZstdCodec, Crc32cCodec]:
    """The bytes-to-bytes codecs of every gexplain array: ``zstd`` (level 0) then ``crc32c``."""
    return ZstdCodec(level=0), Crc32cCodec()


def array_encoding(**extra: Any) -> dict[str, Any]:
    """xarray ``to_zarr`` encoding of one variable: checksummed, every chunk written.

    Parameters
    ----------
    extra
        Further encoding keys (``fill_value``, ``chunks``).
    """
    return {"compressors": codecs(), "write_empty_chunks": True, **extra}


def rewriting_stage(array: str) -> str:
    """Return the command that rewrites ``array`` (a path inside the store)."""
    for pattern, stage in REWRITTEN_BY:
        if fnmatch.fnmatchcase(array, pattern):
            return stage
    return _CREATOR


def split_chunk_key(key: str) -> tuple[str, tuple[int, ...]] | None:
    """Split a chunk key ``counts/c/0/1`` into ``("counts", (0, 1))``; None for metadata keys."""
    match = _CHUNK_KEY.match(key)
    if match is None:
        return None
    return match.group("array"), tuple(int(i) for i in match.group("index").strip("/").split("/"))


def crc_ok(raw: bytes | memoryview) -> bool:
    """Return True when the last 4 bytes of ``raw`` are the little-endian CRC-32C of the rest."""
    view = memoryview(raw).cast("B")
    if len(view) < 4:
        return False
    return int(google_crc32c.value(bytes(view[:-4]))) == int.from_bytes(view[-4:], "little")


def damage_message(store: str, array: str, chunk: tuple[int, ...], what: str) -> str:
    """The message of a damaged chunk: store, array, chunk, what is wrong and what rewrites it."""
    index = ".".join(str(i) for i in chunk)
    return (
        f"store {store} is damaged: chunk {index} of array '{array}' is {what}. Rewrite it with "
        f"{rewriting_stage(array)}; `gexplain verify {store}` lists every damaged chunk"
    )


@dataclass(frozen=True)
class ArrayInfo:
    """What the reader needs to know about one array: whether its chunks are checksummed."""

    checksummed: bool
    shape: tuple[int, ...]
    chunks: tuple[int, ...]


def array_info(doc: dict[str, Any]) -> ArrayInfo | None:
    """Parse an array's ``zarr.json`` document (None for groups)."""
    if doc.get("node_type") != "array":
        return None
    names = [c.get("name") if isinstance(c, dict) else c for c in doc.get("codecs", [])]
    grid = (doc.get("chunk_grid") or {}).get("configuration", {}).get("chunk_shape", [])
    return ArrayInfo(CHECKSUM_CODEC in names, tuple(doc.get("shape", ())), tuple(grid))


class GuardedStore(WrapperStore[Store]):
    """A zarr store that verifies every chunk it reads and fences every chunk it writes.

    Parameters
    ----------
    store
        The wrapped zarr store (local or fsspec).
    url
        The gexplain store it opens, for messages.
    missing_ok
        Return absent chunks as absent (writers read chunks they have not written yet).
    """

    def __init__(self, store: Store, url: str = "", missing_ok: bool = False) -> None:
        super().__init__(store)
        self.url = url
        self.missing_ok = missing_ok
        self._arrays: dict[str, ArrayInfo | None] = {}

    def _with_store(self, store: Store) -> GuardedStore:
        return GuardedStore(store, self.url, self.missing_ok)

    def __str__(self) -> str:
        return str(self._store)  # the wrapped store's URL: what zarr and xarray print and reopen

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "url": self.url, "missing_ok": self.missing_ok}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"], state["url"], state["missing_ok"])  # type: ignore[misc]

    async def _info(self, array: str, prototype: BufferPrototype) -> ArrayInfo | None:
        if array not in self._arrays:
            raw = await self._store.get(f"{array}/{ZARR_JSON}", prototype)
            try:
                doc = json.loads(raw.to_bytes()) if raw is not None else {}
            except json.JSONDecodeError:
                doc = {}
            self._arrays[array] = array_info(doc) if isinstance(doc, dict) else None
        return self._arrays[array]

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read ``key``; a chunk of a checksummed array must be present and pass its checksum."""
        value = await self._store.get(key, prototype, byte_range)
        split = split_chunk_key(key)
        if split is None or byte_range is not None:
            return value
        info = await self._info(split[0], prototype)
        if info is None or not info.checksummed:
            return value
        if value is None:
            if self.missing_ok:
                return None
            raise DamagedStoreError(damage_message(self.url, split[0], split[1], "missing"))
        if not crc_ok(value.to_bytes()):
            raise DamagedStoreError(
                damage_message(self.url, split[0], split[1], "truncated or corrupted (CRC-32C mismatch)")
            )
        return value

    async def set(self, key: str, value: Buffer) -> None:
        """Write ``key`` unless this process lost (or may have lost) its lease on the store."""
        check_unexpired(self.url)
        await self._store.set(key, value)


def guarded_store(url: str, *, read_only: bool = True, missing_ok: bool = False) -> GuardedStore:
    """Open the zarr store under ``url`` wrapped in a :class:`GuardedStore`.

    Parameters
    ----------
    url
        Local path or fsspec URL of the gexplain store (its root).
    read_only
        Open for reading only.
    missing_ok
        Writers: absent chunks are not damage (they are still being written).
    """
    target = normalize_url(url)
    inner: Store
    if is_local(target):
        inner = LocalStore(target, read_only=read_only)
    else:
        inner = FsspecStore.from_url(target, read_only=read_only)
    return GuardedStore(inner, target, missing_ok=missing_ok)


def open_group(url: str, mode: str = "r", *, missing_ok: bool = True) -> zarr.Group:
    """Open a gexplain group through a :class:`GuardedStore` (writers: ``mode="r+"``)."""
    store = guarded_store(url, read_only=mode == "r", missing_ok=missing_ok)
    return zarr.open_group(store, mode=mode, zarr_format=3)  # type: ignore[arg-type]


# -- verification of a whole store ---------------------------------------------------------------


@dataclass
class ArrayReport:
    """The verification of one array.

    Attributes
    ----------
    array
        Its path inside the store.
    chunks
        Number of chunks its shape and chunk grid call for.
    ok, missing, damaged
        Chunks present and passing their checksum, absent, and failing it (or too short).
    status
        ``ok``, ``damaged`` or ``unverifiable`` (no checksum codec: an older store).
    first_bad
        The first missing or damaged chunk (``"0.1"``), or ``""``.
    """

    array: str
    chunks: int
    ok: int
    missing: int
    damaged: int
    status: str
    first_bad: str = ""


def _walk_arrays(url: str) -> Iterable[tuple[str, ArrayInfo]]:
    from gexplain.storage.backend import backend_for

    backend = backend_for(url)

    def walk(prefix: str) -> Iterable[tuple[str, ArrayInfo]]:
        for name in backend.list(join(url, prefix) if prefix else url):
            if name.startswith(".") or name == ZARR_JSON or (prefix == "" and name in _BOOKKEEPING):
                continue
            path = f"{prefix}/{name}" if prefix else name
            got = backend.read_versioned(join(url, path, ZARR_JSON))
            if got is None:
                continue
            try:
                doc = json.loads(got[0])
            except json.JSONDecodeError:
                continue
            info = array_info(doc) if isinstance(doc, dict) else None
            if info is not None:
                yield path, info
            elif isinstance(doc, dict) and doc.get("node_type") == "group":
                yield from walk(path)

    yield from walk("")


def _grid(info: ArrayInfo) -> Iterable[tuple[int, ...]]:
    counts = [max(1, math.ceil(s / c)) if s else 0 for s, c in zip(info.shape, info.chunks, strict=True)]
    total = math.prod(counts)
    for flat in range(total):
        index = []
        for n in reversed(counts):
            index.append(flat % n)
            flat //= n
        yield tuple(reversed(index))


def verify_array(url: str, array: str, info: ArrayInfo) -> ArrayReport:
    """Check every chunk of one array: present, long enough, and matching its CRC-32C."""
    from gexplain.storage.backend import backend_for

    backend = backend_for(url)
    ok = missing = damaged = total = 0
    first = ""
    for index in _grid(info):
        total += 1
        if not info.checksummed:
            continue
        key = "/".join(str(i) for i in index)
        got = backend.read_versioned(join(url, array, "c", key))
        if got is None:
            missing += 1
        elif not crc_ok(got[0]):
            damaged += 1
        else:
            ok += 1
            continue
        first = first or ".".join(str(i) for i in index)
    status = "unverifiable" if not info.checksummed else ("ok" if missing + damaged == 0 else "damaged")
    return ArrayReport(array, total, ok, missing, damaged, status, first)


def verify(url: str) -> list[ArrayReport]:
    """Check every chunk of every array of the store at ``url`` (root variables, results, models).

    Returns
    -------
    list of ArrayReport
        One per array, in path order.
    """
    target = normalize_url(url)
    return [verify_array(target, path, info) for path, info in sorted(_walk_arrays(target))]


def summary(reports: list[ArrayReport]) -> dict[str, Any]:
    """The store-level outcome of :func:`verify`: ``state`` and the damaged/unverifiable arrays."""
    damaged = [r.array for r in reports if r.status == "damaged"]
    unverifiable = [r.array for r in reports if r.status == "unverifiable"]
    state = "damaged" if damaged else ("unverifiable" if unverifiable else "ok")
    return {
        "state": state,
        "arrays": len(reports),
        "chunks": sum(r.chunks for r in reports),
        "damaged": damaged,
        "unverifiable": unverifiable,
    }


def record_verification(url: str, reports: list[ArrayReport]) -> dict[str, Any]:
    """Store the summary of a verification in ``<store>/integrity`` and return it."""
    doc = {
        **summary(reports),
        "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "reports": [asdict(r) for r in reports if r.status != "ok"][:100],
    }
    write_group(join(url, INTEGRITY_GROUP), {"gexplain_verification": doc})
    return doc


def last_verification(url: str) -> dict[str, Any] | None:
    """Return the summary recorded by the last ``gexplain verify`` of the store, or None."""
    attrs = read_group(join(url, INTEGRITY_GROUP)) or {}
    found = attrs.get("gexplain_verification")
    return found if isinstance(found, dict) else None
