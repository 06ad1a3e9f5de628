"""The stage runner: executes a run config's stages in order and keeps a run manifest.

Skip and rerun rule
-------------------
Each stage has a fingerprint: a hash of its kind, name, validated parameters, the run's seed and
store, and the fingerprint of the stage before it. A stage is skipped when the manifest records it
as done with the same fingerprint and the store still exists. Changing a stage's parameters
therefore changes its fingerprint and that of every later stage, so that stage and all after it
rerun; stages before it are skipped. ``force=True`` reruns everything.

A stage the runner reruns owns what it wrote before: when the manifest already records it (done,
failed or killed while running), its ``overwrite`` parameter is switched on, so a changed
parameter or a resumed kill replaces its model set or result instead of failing on it.

A run holds its leases for its whole length (:mod:`gexplain.storage.lease`): its run folder's, its
store's (exclusive) and, for a store on object storage, its run state's beside the store
(``<store>.runs/<run name>/.lease``: the run folder of a scheduled pod is new each time, so two
pods of one schedule meet there even before the store exists). All are taken before the run
state is restored and before any cluster is connected, so a second, overlapping run fails in
seconds (exit 2) naming the holder, without having paid for a connection; readers of the store
are never blocked.

When a stage fails, the failure webhook goes out first; the manifest is mirrored beside the store
after it, and a mirror that fails too (the object store is down) is reported after the webhook
while the run still ends with the stage's own error.

The manifest (``<run folder>/manifest.json``, written atomically after every stage) holds the
config, library versions, the runtime, and per stage: status, fingerprint, wall time, peak memory
of the process tree, and the stage's outputs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from gexplain.cluster.runtime import Runtime, start_runtime
from gexplain.pipelines import environment, notify, runstate
from gexplain.pipelines.config import RunConfig
from gexplain.pipelines.memory import PeakMemory
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.stages import StageContext, get_stage
from gexplain.pipelines.versions import library_versions
from gexplain.storage import faults
from gexplain.storage.lease import hold, hold_store, release_all
from gexplain.storage.paths import atomic_write_bytes, exists

MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


def fingerprint(previous: str, kind: str, name: str, params: dict[str, Any], seed: int, store: str) -> str:
    """Return the stage fingerprint (hex sha256) that decides skip or rerun."""
    payload = json.dumps(
        {"prev": previous, "kind": kind, "name": name, "params": params, "seed": seed, "store": store},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def input_state(paths: list[str]) -> list[tuple[str, int, int]]:
    """Return (path, size, mtime_ns) of every local file under ``paths`` (directories walked).

    Parameters
    ----------
    paths
        Files or directories a stage reads; URLs are listed by name only.
    """
    state: list[tuple[str, int, int]] = []
    for raw in paths:
        path = Path(raw)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat() if f.exists() else None
            state.append((str(f), st.st_size if st else -1, st.st_mtime_ns if st else -1))
    return state


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """Return the run manifest, or an empty one."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _write_manifest(run_dir: Path, manifest: dict[str, Any], *, mirror: bool = True) -> None:
    atomic_write_bytes(str(run_dir / MANIFEST), json.dumps(manifest, indent=2, default=str).encode())
    if mirror:
        runstate.mirror(run_dir, manifest)  # beside an object-store store, for a fresh machine's rerun


def _hold_run(config: RunConfig) -> bool:
    """Take the run's leases, before anything else touches the run state or a cluster.

    Returns
    -------
    bool
        True when the store exists (and its exclusive lease is now held).

    Raises
    ------
    LeaseHeldError
        When another live run holds the run folder, the run state beside the store or the store.
    """
    hold(str(config.run_dir / ".lease"), "exclusive", f"run folder {config.run_dir}")
    remote = runstate.state_url(config.store_url, config.run.name)
    if remote is not None:
        hold(f"{remote}/.lease", "exclusive", f"run '{config.run.name}' (state at {remote})")
    present = exists(config.store_url)
    if present:
        hold_store(config.store_url, "exclusive")
    return present


def _fail(config: RunConfig, manifest: dict[str, Any], error: BaseException) -> None:
    """Record a failed run: local manifest, webhook, then the mirror (whose own error is only reported)."""
    if manifest["stages"] and manifest["stages"][-1].get("status") == "running":
        manifest["stages"][-1]["status"] = "failed"
    try:
        _write_manifest(config.run_dir, manifest, mirror=False)
    except OSError as exc:
        log.error("could not write the run manifest in %s: %s", config.run_dir, exc)
    notify.send(config.notify, manifest, error)
    try:
        runstate.mirror(config.run_dir, manifest)
    except Exception as exc:  # the store may be what failed; the stage's error is the run's
        where = runstate.state_url(config.store_url, config.run.name)
        log.error("could not mirror the run state to %s: %s: %s", where, type(exc).__name__, exc)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _owned(params: Any) -> Any:
    """Return ``params`` with ``overwrite`` on, for a stage whose earlier outputs the runner owns."""
    if "overwrite" in type(params).model_fields and not params.overwrite:
        return params.model_copy(update={"overwrite": True})
    return params


def redacted(raw: dict[str, Any]) -> dict[str, Any]:
    """The config as written to manifests and webhooks: storage option values and the webhook's
    path and query (credentials live there) are masked."""
    out = dict(raw)
    storage = dict(out.get("storage") or {})
    if storage.get("options"):
        storage["options"] = {key: "***" for key in storage["options"]}
        out["storage"] = storage
    hook = (out.get("notify") or {}).get("hook_url")
    if hook:
        out["notify"] = {**out["notify"], "hook_url": f"{notify.public_address(hook)}/***"}
    return out


def run_config(
    config: RunConfig,
    *,
    force: bool = False,
    progress: Progress | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Execute the configured stages in order, skipping those already done.

    Parameters
    ----------
    config
        A validated config (:func:`gexplain.pipelines.config.parse_config`).
    force
        Rerun every stage.
    progress
        Progress reporting (default: bars on a terminal, log lines otherwise).
    runtime
        An existing runtime to use (it is not shut down); by default one is started from
        ``config.cluster`` and shut down at the end.

    Returns
    -------
    dict
        The manifest as written, with ``"ran"`` and ``"skipped"`` stage-name lists.
    """
    progress = progress or Progress()
    environment.prepare(config)  # refuses a run.out URL; storage options and worker env
    config.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run_held(config, force, progress, runtime)
    finally:
        release_all()  # after the last manifest write: the run holds its leases to the end


def _run_held(config: RunConfig, force: bool, progress: Progress, runtime: Runtime | None) -> dict[str, Any]:
    """:func:`run_config` once the run folder exists; the caller releases the leases taken here."""
    raw = redacted(config.raw)
    own_runtime = runtime is None
    try:  # leases first; then the run state; clusters last, before the first stage
        store_present = _hold_run(config)
        runstate.restore(config.run_dir, config.store_url, config.run.name)
        previous = read_manifest(config.run_dir)
        if runtime is None:
            runtime = start_runtime(
                config.cluster.address,
                dask_address=config.cluster.dask_address,
                num_cpus=config.cluster.num_cpus or None,
                num_gpus=config.cluster.num_gpus,
            )
    except BaseException as exc:
        notify.send(config.notify, {"config": raw, "store": config.store_url, "stages": []}, exc)
        raise
    done = {s["name"]: s for s in previous.get("stages", []) if s.get("status") == "done"}
    recorded = {s["name"] for s in previous.get("stages", [])}
    manifest: dict[str, Any] = {
        "config_path": str(config.path),
        "config": raw,
        "store": config.store_url,
        "versions": library_versions(),
        "runtime": runtime.describe(),
        "started": _now(),
        "stages": [],
    }
    ran: list[str] = []
    skipped: list[str] = []
    fp = ""
    try:
        for spec in config.stages:
            params = spec.params.model_dump(mode="json")
            params_obj = spec.params
            stage = get_stage(spec.kind)
            inputs = input_state(stage.inputs(spec.params)) if stage.inputs else []
            fp = fingerprint(
                fp, spec.kind, spec.name, {**params, "_inputs": inputs}, config.run.seed, config.store_url
            )
            record = done.get(spec.name)
            if not force and not ran and store_present and record and record.get("fingerprint") == fp:
                skipped.append(spec.name)
                manifest["stages"].append(record)
                progress.print(f"[dim]skip[/dim] {spec.name}: done earlier with the same parameters")
                continue
            if spec.name in recorded:
                params_obj = _owned(params_obj)
            ctx = StageContext(
                run_dir=config.run_dir,
                store_url=config.store_url,
                seed=config.run.seed,
                runtime=runtime,
                progress=progress,
                stage_name=spec.name,
            )
            progress.print(f"[bold]run[/bold] {spec.name} ({spec.kind})")
            faults.set_scope(spec.kind)
            entry: dict[str, Any] = {
                "name": spec.name,
                "kind": spec.kind,
                "fingerprint": fp,
                "params": params,
                "started": _now(),
                "status": "running",
            }
            manifest["stages"].append(entry)
            _write_manifest(config.run_dir, manifest)
            t0 = time.perf_counter()
            with PeakMemory() as mem, runtime.dask_scheduler():
                outputs = stage.run(ctx, params_obj)
            faults.end_scope()  # (fault tests) before the stage is recorded done
            if not exists(config.store_url) or not store_present:
                store_present = exists(config.store_url)
                if store_present:  # the stage created the store: hold it for the rest of the run
                    hold_store(config.store_url, "exclusive")
            entry.update(
                status="done",
                wall_s=round(time.perf_counter() - t0, 3),
                peak_rss_mb=round(mem.peak_bytes / 2**20, 1),
                outputs=outputs,
                finished=_now(),
            )
            ran.append(spec.name)
            _write_manifest(config.run_dir, manifest)
            faults.set_scope("-")
    except BaseException as exc:
        _fail(config, manifest, exc)
        raise
    finally:
        if own_runtime:
            runtime.shutdown()
        progress.close()
    manifest["finished"] = _now()
    _write_manifest(config.run_dir, manifest)
    notify.send(config.notify, manifest)
    if not ran:
        progress.print("nothing to do: every stage is done with the same parameters (use --force to rerun)")
    return {**manifest, "ran": ran, "skipped": skipped}
