"""Writer leases with fencing: one writer per store, per result and per run folder; readers never wait.

A lease is a small record -- owner (the command), host, pid, token, generation, acquired and expiry
times -- kept in the attributes of a Zarr group document (``<store>/leases/<scope>/zarr.json``), so
it works on local paths and on object stores alike. Two modes:

* ``exclusive``: one holder (``gexplain normalize`` rewriting root variables, a whole
  ``gexplain run``, the writer of one result or model set);
* ``shared``: any number of holders, none exclusive (writers of different results may run side
  by side; a normalize then waits for none of them and fails instead).

A second writer fails at once with :class:`LeaseHeldError` (an :class:`InputError`, exit 2) that
names the holder. A lease whose expiry has passed, or whose holder ran on this host and is gone
(SIGKILL), is stale and is taken over.

Fencing. Every lease document carries a ``generation`` that increases at every acquisition (so at
every takeover); a holder records the generation it got. Every read-decide-write of the document
is one conditional write through the storage backend (:meth:`Backend.write_if`: ``flock``
locally, ``If-Match``/``If-None-Match`` on the ETag on S3), so two writers never both win and a
renewal never re-adds a record that another writer removed. Held leases are renewed by a daemon
thread every ``ttl / 3`` seconds; when it finds this process's record gone or of another
generation (the process was paused past its expiry and someone took over), the lease is *lost*:
it is never renewed again, and every later commit of that store (:func:`fence`, run by every
storage writer before it writes) raises :class:`LeaseLostError` naming the new holder. Between two
renewals a writer also refuses to write once its last confirmed expiry has passed
(:func:`check_unexpired`, no I/O), so a process continued after ``SIGSTOP`` writes nothing before
it has re-read its lease.

Leases are taken lazily by the storage writers (:func:`hold`) and kept until
:func:`release_all` (end of a command or run; also at interpreter exit).

Delegated writes. A holder may let worker processes write under its leases (the explain engine's
actors write their own sample blocks): :func:`grant` returns :class:`WriteGrant` records (the
holder's token, generation and last confirmed expiry of each lease it holds on a store), and a
worker that :func:`accept` s them writes as the holder's delegate. It never writes the lease
document: the holder alone renews it. The worker fences like the holder -- before each commit
(:func:`fence`) it reads the document and checks that the holder's record is there, of the granted
generation and unexpired; before each chunk (:func:`check_unexpired`, no I/O) it checks the last
expiry it confirmed -- so once the holder lost its lease, was killed or stopped renewing it, the
worker writes nothing more.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gexplain.storage import faults
from gexplain.storage.backend import backend_for
from gexplain.storage.errors import InputError
from gexplain.storage.nodes import ZARR_JSON, ensure_groups, group_doc, pid_alive
from gexplain.storage.paths import host_name, join, normalize_url

Mode = Literal["exclusive", "shared"]
LEASES_DIR = "leases"
DEFAULT_TTL_S = 60.0
_MAX_TRIES = 200


class LeaseHeldError(InputError):
    """Another live process holds the lease a writer needs."""


class LeaseLostError(InputError):
    """This process's lease was taken over (it was paused or unreachable past its expiry)."""


def ttl_seconds() -> float:
    """Lease lifetime in seconds (``GEXPLAIN_LEASE_TTL``, default 60)."""
    return float(os.environ.get("GEXPLAIN_LEASE_TTL", DEFAULT_TTL_S))


def owner_label() -> str:
    """Return a short description of this process's command (``gexplain normalize s.zarr``)."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    return " ".join(argv)[:200]


_TOKEN = f"{host_name()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _me(ttl: float) -> dict[str, Any]:
    now = time.time()
    return {
        "token": _TOKEN,
        "owner": owner_label(),
        "host": host_name(),
        "pid": os.getpid(),
        "acquired": now,
        "expires": now + ttl,
    }


def is_live(holder: dict[str, Any], now: float | None = None) -> bool:
    """Return True when a lease holder record is neither expired nor a dead process of this host."""
    now = time.time() if now is None else now
    if float(holder.get("expires", 0)) < now:
        return False
    if holder.get("host") == host_name() and not pid_alive(int(holder.get("pid", -1))):
        return False
    return True


def describe(holder: dict[str, Any]) -> str:
    """Human-readable holder: ``'gexplain explain s.zarr' (host h, pid 12, lease expires in 41 s)``."""
    left = max(0.0, float(holder.get("expires", 0)) - time.time())
    return f"'{holder.get('owner', '?')}' (host {holder.get('host')}, pid {holder.get('pid')}, lease expires in {left:.0f} s)"


def lease_url(store_url: str, scope: str) -> str:
    """Folder of the lease ``scope`` (e.g. ``"store"``, ``"results/explain/run1"``) of a store."""
    return join(store_url, LEASES_DIR, scope.strip("/").replace("/", "__"))


@dataclass
class _Doc:
    """A lease document as read: its generation, holders and the version to write against."""

    generation: int
    holders: dict[str, dict[str, Any]]
    version: str | None
    taken: dict[str, Any] | None = None  # who entered last (owner, host, pid, generation)


def _parse(data: bytes | None) -> _Doc:
    try:
        doc = json.loads(data) if data else {}
    except json.JSONDecodeError:
        doc = {}
    lease = (doc.get("attributes") or {}).get("gexplain_lease", {}) if isinstance(doc, dict) else {}
    if not isinstance(lease, dict):
        return _Doc(0, {}, None)
    taken = lease.get("taken")
    return _Doc(
        int(lease.get("generation", 0)),
        dict(lease.get("holders", {})),
        None,
        taken if isinstance(taken, dict) else None,
    )


def _read(url: str) -> _Doc:
    got = backend_for(url).read_versioned(join(url, ZARR_JSON))
    doc = _parse(got[0] if got else None)
    doc.version = got[1] if got else None
    return doc


def _write_if(
    url: str,
    doc: _Doc,
    generation: int,
    holders: dict[str, dict[str, Any]],
    taken: dict[str, Any] | None = None,
) -> bool:
    lease = {"generation": generation, "holders": holders, "taken": taken or doc.taken}
    data = group_doc({"gexplain_lease": {k: v for k, v in lease.items() if v is not None}})
    return backend_for(url).write_if(join(url, ZARR_JSON), data, doc.version)


def read_holders(url: str) -> list[dict[str, Any]]:
    """Return the live holders of the lease at ``url`` (each with a ``mode`` key)."""
    now = time.time()
    return [h for h in _read(url).holders.values() if is_live(h, now)]


def _newest(doc: _Doc, token: str) -> str:
    others = [h for t, h in doc.holders.items() if t != token and is_live(h)]
    if others:
        return describe(max(others, key=lambda h: int(h.get("generation", 0))))
    taken = doc.taken or {}
    if taken.get("token") not in (None, token):
        return (
            f"'{taken.get('owner', '?')}' (host {taken.get('host')}, pid {taken.get('pid')}, "
            f"generation {taken.get('generation')}; since finished)"
        )
    return "another process"


def _contention(tries: int) -> None:
    if tries >= _MAX_TRIES:
        raise RuntimeError("lease document kept changing under this writer; retry the command")
    time.sleep(0.005 * (1 + tries % 10))


def _acquire(url: str, mode: Mode, what: str, base: str | None) -> int:
    """Enter the lease at ``url``; return the generation this process got."""
    ttl = ttl_seconds()
    if base is not None:
        ensure_groups(base, url)
    for tries in range(_MAX_TRIES + 1):
        doc = _read(url)
        now = time.time()
        holders = {t: h for t, h in doc.holders.items() if is_live(h, now) and t != _TOKEN}
        blocking = [h for h in holders.values() if mode == "exclusive" or h.get("mode") == "exclusive"]
        if blocking:
            raise LeaseHeldError(
                f"{what} is being written by {describe(blocking[0])}; wait for it to finish (a killed "
                "holder's lease is taken over once it expires, or at once on the same host)"
            )
        generation = doc.generation + 1
        holders[_TOKEN] = {**_me(ttl), "mode": mode, "generation": generation}
        taken = {k: holders[_TOKEN][k] for k in ("token", "owner", "host", "pid", "acquired", "generation")}
        if _write_if(url, doc, generation, holders, taken):
            return generation
        _contention(tries)
    raise AssertionError("unreachable")


@dataclass
class _Held:
    url: str
    mode: Mode
    base: str | None
    what: str
    generation: int
    expires: float
    lost: str | None = None
    granter: str | None = None  # the holder's token when this process writes as its delegate
    granter_host: str | None = None  # and the granting process, checked without I/O
    granter_pid: int = -1


@dataclass(frozen=True)
class WriteGrant:
    """Permission for a worker process to write under one of its granter's leases (:func:`grant`).

    Attributes
    ----------
    url
        The lease folder (:func:`lease_url`).
    base
        The store root the lease protects (None for a run folder's lease).
    mode
        The granter's mode, ``"exclusive"`` or ``"shared"``.
    what
        What the lease protects, for messages.
    token
        The granter's lease token: its record in the lease document.
    generation
        The generation the granter holds.
    expires
        The granter's last confirmed expiry (seconds since the epoch) when the grant was made.
    host, pid
        The granting process: a worker on the same host stops writing as soon as it has exited
        (a dead holder's lease is free at once to a rerun on that host).
    """

    url: str
    base: str | None
    mode: Mode
    what: str
    token: str
    generation: int
    expires: float
    host: str
    pid: int


def _lost_message(held: _Held, doc: _Doc) -> str:
    if held.granter is not None:
        return (
            f"the writer that let this worker write {held.what} (generation {held.generation}) no longer "
            f"holds its lease: it was stopped, killed or paused past the lease's expiry, or "
            f"{_newest(doc, held.granter)} took over; nothing more is written by this worker"
        )
    return (
        f"this process lost its lease on {held.what} (generation {held.generation}): it was paused or "
        f"unreachable past the lease's expiry and {_newest(doc, _TOKEN)} took over; nothing more is "
        "written by this process. Check that writer's result, then rerun if needed"
    )


def _confirm(held: _Held, doc: _Doc) -> None:
    """A delegate's check: the granter's record is there, of its generation and unexpired; else lost."""
    record = doc.holders.get(str(held.granter))
    if record is None or int(record.get("generation", -1)) != held.generation or not is_live(record):
        held.lost = _lost_message(held, doc)
    else:
        held.expires = float(record["expires"])


def _renew(held: _Held) -> None:
    """Extend this process's record if it is still there and of its generation; else mark it lost."""
    if held.lost is not None or held.granter is not None:  # a delegate never writes the document
        return
    for tries in range(_MAX_TRIES + 1):
        doc = _read(held.url)
        mine = doc.holders.get(_TOKEN)
        if mine is None or int(mine.get("generation", -1)) != held.generation:
            held.lost = _lost_message(held, doc)
            return
        expires = time.time() + ttl_seconds()
        holders = {**doc.holders, _TOKEN: {**mine, "expires": expires}}
        if _write_if(held.url, doc, doc.generation, holders):
            held.expires = expires
            return
        _contention(tries)


def _release(held: _Held) -> None:
    if held.lost is not None or held.granter is not None:
        return
    for tries in range(_MAX_TRIES + 1):
        doc = _read(held.url)
        mine = doc.holders.get(_TOKEN)
        if doc.version is None or mine is None or int(mine.get("generation", -1)) != held.generation:
            return  # gone with its store, or taken over: nothing of ours to remove
        holders = {t: h for t, h in doc.holders.items() if t != _TOKEN}
        if _write_if(held.url, doc, doc.generation, holders):
            return
        _contention(tries)


_HELD: dict[str, _Held] = {}
_LOCK = threading.RLock()
_RENEWER: threading.Thread | None = None


def _renew_loop() -> None:
    while True:
        time.sleep(max(ttl_seconds() / 3.0, 0.05))
        with _LOCK, faults.uncounted():  # never renews a lease that release_all is dropping
            for h in list(_HELD.values()):
                with contextlib.suppress(Exception):  # an unreachable store must not kill the renewer
                    _renew(h)


def renew_all() -> None:
    """Renew every lease this process holds now (those found taken over become lost)."""
    with _LOCK:
        for h in list(_HELD.values()):
            _renew(h)


def _of_store(store_url: str | None) -> list[_Held]:
    """Leases held on ``store_url`` (a store, a folder inside one, or a lease folder); all when None."""
    url = normalize_url(store_url) if store_url is not None else None

    def covers(h: _Held) -> bool:
        inside = h.base is not None and (url == h.base or str(url).startswith(h.base.rstrip("/") + "/"))
        return url is None or h.url == url or inside

    return [h for h in _HELD.values() if covers(h)]


def check_unexpired(store_url: str | None = None) -> None:
    """Refuse to write once a held lease is lost or its last confirmed expiry passed (no I/O).

    Parameters
    ----------
    store_url
        Check the leases of this store (or run folder); all held leases when None.

    Raises
    ------
    LeaseLostError
        When a lease was lost, or has expired and a renewal finds it taken over.
    """
    with _LOCK:
        for held in _of_store(store_url):
            if (
                held.lost is None
                and held.granter is not None
                and held.granter_host == host_name()
                and not pid_alive(held.granter_pid)
            ):
                held.lost = f"{held.what}: the process that granted it (pid {held.granter_pid}) has exited"
            if held.lost is None and held.expires <= time.time():  # paused past it: re-read first
                if held.granter is None:
                    _renew(held)
                else:
                    _confirm(held, _read(held.url))
            if held.lost is not None:
                raise LeaseLostError(held.lost)


def fence(store_url: str | None = None) -> None:
    """Check, before a commit, that every lease held on ``store_url`` is still this process's.

    Reads each lease document and checks that this process's record is there with its generation
    (renewing it when less than half its lifetime is left), so a writer whose lease was taken
    over writes nothing more. A delegate (:func:`accept`) checks its granter's record instead,
    which must also be unexpired.

    Raises
    ------
    LeaseLostError
        Naming the new holder.
    """
    with _LOCK:
        for held in _of_store(store_url):
            if held.lost is None and held.granter is not None:
                _confirm(held, _read(held.url))
            elif held.lost is None:
                doc = _read(held.url)
                mine = doc.holders.get(_TOKEN)
                if mine is None or int(mine.get("generation", -1)) != held.generation:
                    held.lost = _lost_message(held, doc)
                elif float(mine.get("expires", 0)) - time.time() < ttl_seconds() / 2:
                    _renew(held)
            if held.lost is not None:
                raise LeaseLostError(held.lost)


def hold(url: str, mode: Mode, what: str, *, base: str | None = None) -> None:
    """Take the lease at ``url`` for this process, or check that it is still held (:func:`fence`).

    Parameters
    ----------
    url
        The lease folder (:func:`lease_url`, or a run folder's).
    mode
        ``"exclusive"`` or ``"shared"``.
    what
        What it protects, for the message (``"store /data/s.zarr"``).
    base
        The store root, so the lease folder's parents become Zarr groups.

    Raises
    ------
    LeaseHeldError
        When a live holder blocks it.
    LeaseLostError
        When this process held it and lost it to another writer.
    """
    global _RENEWER
    key = normalize_url(url)
    with _LOCK:
        current = _HELD.get(key)
        if current is not None and (current.mode == "exclusive" or mode == "shared"):
            if current.lost is None:
                check_unexpired(key)
            if current.lost is not None:
                raise LeaseLostError(current.lost)
            return
        if current is None and base is not None:
            root = normalize_url(base)
            if any(h.granter is not None and h.base == root for h in _HELD.values()):
                raise RuntimeError(
                    f"{what}: this process writes {root} under granted leases and may take none of its "
                    "own; the granter must grant this scope"
                )
        if current is not None:  # shared -> exclusive: leave the shared record first
            _release(current)
            del _HELD[key]
        generation = _acquire(key, mode, what, base)
        _HELD[key] = _Held(
            key, mode, normalize_url(base) if base else None, what, generation, time.time() + ttl_seconds()
        )
        if _RENEWER is None or not _RENEWER.is_alive():
            _RENEWER = threading.Thread(target=_renew_loop, name="gexplain-lease-renewer", daemon=True)
            _RENEWER.start()


def hold_store(store_url: str, mode: Mode) -> None:
    """Hold a store's writer lease: ``exclusive`` to change its root, ``shared`` to add results."""
    hold(lease_url(store_url, "store"), mode, f"store {normalize_url(store_url)}", base=store_url)


def hold_scope(store_url: str, scope: str) -> None:
    """Hold the store shared and ``scope`` (a result or model set) exclusively."""
    hold_store(store_url, "shared")
    hold(lease_url(store_url, scope), "exclusive", f"'{scope}' in {normalize_url(store_url)}", base=store_url)


@contextlib.contextmanager
def moving_store(store_url: str, staged: str) -> Iterator[None]:
    """Keep this process's leases on ``store_url`` while a staged tree replaces it whole.

    The lease documents are copied into ``staged`` before the caller renames it into place; the
    renewer is held off meanwhile, so the copies stay current.
    """
    with _LOCK:
        base = normalize_url(store_url)
        for held in _of_store(base):
            got = backend_for(held.url).read_versioned(join(held.url, ZARR_JSON))
            if got is not None:
                target = staged.rstrip("/") + held.url[len(base) :]
                ensure_groups(staged, target)
                backend_for(target).write_atomic(join(target, ZARR_JSON), got[0])
        yield


def reinstate(store_url: str) -> None:
    """Write this process's lease records again after its store was removed (object-store overwrite).

    Raises
    ------
    LeaseLostError
        When another writer created a lease document there first.
    """
    with _LOCK:
        base = normalize_url(store_url)
        for held in (h for h in _of_store(base) if h.granter is None):
            ensure_groups(base, held.url)
            holder = {**_me(ttl_seconds()), "mode": held.mode, "generation": held.generation}
            if not _write_if(held.url, _Doc(0, {}, None), held.generation, {_TOKEN: holder}):
                held.lost = _lost_message(held, _read(held.url))
                raise LeaseLostError(held.lost)
            held.expires = float(holder["expires"])


def grant(store_url: str, scope: str) -> tuple[WriteGrant, ...]:
    """Let worker processes write ``scope`` of ``store_url`` under this process's leases.

    Parameters
    ----------
    store_url
        The store.
    scope
        The result or model set the workers write (e.g. ``"results/explain/run1"``); the store's
        own lease and this scope's are granted, nothing else this process holds.

    Returns
    -------
    tuple of WriteGrant
        To be passed to the workers, which :func:`accept` them.

    Raises
    ------
    LeaseLostError
        When a lease on the store was lost (nothing may be granted).
    RuntimeError
        When this process does not hold both leases (take them first: :func:`hold_scope`).
    """
    check_unexpired(store_url)
    wanted = {normalize_url(lease_url(store_url, "store")), normalize_url(lease_url(store_url, scope))}
    with _LOCK:
        held = [h for h in _of_store(normalize_url(store_url)) if h.url in wanted]
        if len(held) != len(wanted):
            raise RuntimeError(
                f"this process does not hold the store and '{scope}' leases of {normalize_url(store_url)} "
                "to grant (hold_scope first)"
            )
        return tuple(
            WriteGrant(
                h.url,
                h.base,
                h.mode,
                h.what,
                h.granter or _TOKEN,
                h.generation,
                h.expires,
                h.granter_host or host_name(),
                h.granter_pid if h.granter else os.getpid(),
            )
            for h in held
        )


def accept(grants: Iterable[WriteGrant]) -> None:
    """Write under another process's leases from now on (a worker given :func:`grant` records).

    Every later write of the granted store fences against the granter's records; a grant this
    process made itself is already held and changes nothing.
    """
    with _LOCK:
        for g in grants:
            if g.token != _TOKEN:
                _HELD[g.url] = _Held(
                    g.url,
                    g.mode,
                    g.base,
                    g.what,
                    g.generation,
                    g.expires,
                    granter=g.token,
                    granter_host=g.host,
                    granter_pid=g.pid,
                )


def release_all() -> None:
    """Release every lease this process holds (end of a command or run)."""
    with _LOCK:
        for h in list(_HELD.values()):
            with contextlib.suppress(Exception):
                _release(h)
        _HELD.clear()


def scope_holders(store_url: str, scope: str) -> list[dict[str, Any]]:
    """Live holders of a store's lease ``scope`` (for ``gexplain info``)."""
    return read_holders(lease_url(store_url, scope))


atexit.register(release_all)
