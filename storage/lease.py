"""Writer leases: one writer per store, per result and per run folder; readers never wait.

A lease is a small record -- owner (the command), host, pid, token, acquired and expiry times --
kept in the attributes of a Zarr group document (``<store>/leases/<scope>/zarr.json``), so it
works on local paths and on object stores alike. Two modes:

* ``exclusive``: one holder (``gexplain normalize`` rewriting root variables, a whole
  ``gexplain run``, the writer of one result or model set);
* ``shared``: any number of holders, none exclusive (writers of different results may run side
  by side; a normalize then waits for none of them and fails instead).

A second writer fails at once with :class:`LeaseHeldError` (an :class:`InputError`, exit 2) that
names the holder. Held leases are renewed by a daemon thread every ``ttl / 3`` seconds while the
process runs. A lease whose expiry has passed, or whose holder ran on this host and is gone
(SIGKILL), is stale and is taken over. Locally the read-decide-write step runs under ``flock`` on
the lease's folder; on object stores it is write-then-verify (the last writer wins, the loser sees
another token and backs off).

Leases are taken lazily by the storage writers (:func:`hold`) and kept until
:func:`release_all` (end of a command or run; also at interpreter exit).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gexplain.storage.errors import InputError
from gexplain.storage.nodes import pid_alive, read_group, write_group
from gexplain.storage.paths import exists, host_name, is_local, join, normalize_url

Mode = Literal["exclusive", "shared"]
LEASES_DIR = "leases"
DEFAULT_TTL_S = 60.0
_VERIFY_DELAY_S = 0.2


class LeaseHeldError(InputError):
    """Another live process holds the lease a writer needs."""


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


@contextlib.contextmanager
def _locked(url: str, base: str | None) -> Iterator[None]:
    """Serialise read-decide-write of local leases (``flock`` on the store root, or on the folder
    holding a run lease, which exist already: no folder is made before its group document);
    no-op on object stores."""
    if not is_local(url):
        yield
        return
    folder = Path(normalize_url(base)) if base is not None else Path(normalize_url(url)).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _holders(attrs: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    lease = (attrs or {}).get("gexplain_lease", {})
    return dict(lease.get("holders", {})) if isinstance(lease, dict) else {}


def read_holders(url: str) -> list[dict[str, Any]]:
    """Return the live holders of the lease at ``url`` (each with a ``mode`` key)."""
    now = time.time()
    return [h for h in _holders(read_group(url)).values() if is_live(h, now)]


def _write(url: str, holders: dict[str, dict[str, Any]], base: str | None) -> None:
    write_group(url, {"gexplain_lease": {"holders": holders}}, parents_below=base)


def _acquire(url: str, mode: Mode, what: str, base: str | None) -> None:
    ttl = ttl_seconds()
    with _locked(url, base):
        now = time.time()
        holders = {t: h for t, h in _holders(read_group(url)).items() if is_live(h, now) and t != _TOKEN}
        blocking = [h for h in holders.values() if mode == "exclusive" or h.get("mode") == "exclusive"]
        if blocking:
            raise LeaseHeldError(
                f"{what} is being written by {describe(blocking[0])}; wait for it to finish (a killed "
                "holder's lease is taken over once it expires, or at once on the same host)"
            )
        holders[_TOKEN] = {**_me(ttl), "mode": mode}
        _write(url, holders, base)
    if not is_local(url):
        time.sleep(_VERIFY_DELAY_S)
        now = time.time()
        after = {t: h for t, h in _holders(read_group(url)).items() if is_live(h, now)}
        others = [h for t, h in after.items() if t != _TOKEN]
        if _TOKEN not in after or (mode == "exclusive" and others):
            raise LeaseHeldError(
                f"{what} is being written by {describe(others[0]) if others else 'another process'}"
            )


def _renew(url: str, mode: Mode, base: str | None) -> None:
    """Extend this process's lease; re-enter it when its record went away (a store replaced whole)."""
    if base is not None and not exists(base):
        return
    with _locked(url, base):
        holders = _holders(read_group(url))
        mine = holders.get(_TOKEN) or {**_me(ttl_seconds()), "mode": mode}
        holders[_TOKEN] = {**mine, "expires": time.time() + ttl_seconds()}
        _write(url, holders, base)


def _release(url: str, base: str | None) -> None:
    with _locked(url, base):
        attrs = read_group(url)
        if attrs is None:
            return  # the folder went away with its store (replaced); nothing to release
        holders = _holders(attrs)
        if holders.pop(_TOKEN, None) is not None:
            _write(url, holders, base)


@dataclass
class _Held:
    url: str
    mode: Mode
    base: str | None


_HELD: dict[str, _Held] = {}
_LOCK = threading.RLock()
_RENEWER: threading.Thread | None = None


def _renew_loop() -> None:
    while True:
        time.sleep(max(ttl_seconds() / 3.0, 0.05))
        with _LOCK:  # never renews a lease that release_all is dropping
            for h in list(_HELD.values()):
                with contextlib.suppress(Exception):  # a vanished store must not kill the renewer
                    _renew(h.url, h.mode, h.base)


def renew_all() -> None:
    """Renew (and re-enter, after a store was swapped in whole) every lease this process holds."""
    with _LOCK:
        for h in list(_HELD.values()):
            _renew(h.url, h.mode, h.base)


def hold(url: str, mode: Mode, what: str, *, base: str | None = None) -> None:
    """Take the lease at ``url`` for this process (no-op when already held in a covering mode).

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
    """
    global _RENEWER
    key = normalize_url(url)
    with _LOCK:
        current = _HELD.get(key)
        if current is not None and (current.mode == "exclusive" or mode == "shared"):
            return
        _acquire(key, mode, what, base)
        _HELD[key] = _Held(key, mode, base)
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


def release_all() -> None:
    """Release every lease this process holds (end of a command or run)."""
    with _LOCK:
        for h in list(_HELD.values()):
            with contextlib.suppress(Exception):
                _release(h.url, h.base)
        _HELD.clear()


def scope_holders(store_url: str, scope: str) -> list[dict[str, Any]]:
    """Live holders of a store's lease ``scope`` (for ``gexplain info``)."""
    return read_holders(lease_url(store_url, scope))


atexit.register(release_all)
