"""Issue 19 items 3-5: the run never waits to fail, webhooks come before mirrors and never leak
credentials, and a run takes its credentials off shared Dask workers when it ends."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gexplain.pipelines import runner, runstate
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.notify import NotifySection, send
from gexplain.pipelines.progress import SILENT
from gexplain.storage.lease import LeaseHeldError
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]


class _Hook:
    """A webhook receiver on 127.0.0.1 that records each POST body and when it came."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append((time.monotonic(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/SECRET"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def hook():
    h = _Hook()
    yield h
    h.server.shutdown()


SIMULATE = """
[run]
name = "ff"
out = "{out}"
store = "{store}"
seed = 1
{extra}
[[stage]]
kind = "simulate"
[stage.params]
simulator = "cohort"
n_samples = 20
n_genes = 60
n_classes = 2
n_program_genes = 6
n_xor_pairs = 1
n_circle_pairs = 1
"""


def _config(tmp_path: Path, store: str = "cohort.zarr", extra: str = "") -> Path:
    path = tmp_path / "job.toml"
    path.write_text(SIMULATE.format(out=tmp_path / "run", store=store, extra=extra))
    return path


HOLDER = """
import sys, time
from gexplain.storage.lease import hold_store
hold_store(sys.argv[1], "exclusive")
print("held", flush=True)
time.sleep(120)
"""


def test_overlapping_run_exits_2_in_seconds_before_any_cluster_or_run_state(tmp_path, monkeypatch, capsys):
    """A live writer holds the store: the run fails at its leases, names the holder, restores no
    run state and connects to no cluster (the unreachable address would fail differently)."""
    cfg = _config(tmp_path)
    assert main(["run", str(cfg), "--cluster", "local"]) == 0  # the store exists now
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run" / "cohort.zarr")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        touched: list[str] = []
        monkeypatch.setattr(runner, "start_runtime", lambda *a, **k: touched.append("cluster"))
        monkeypatch.setattr(runstate, "restore", lambda *a, **k: touched.append("restore"))
        capsys.readouterr()
        started = time.monotonic()
        code = main(["run", str(cfg), "--force", "--cluster", "127.0.0.1:1"])
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert code == 2
    assert f"pid {holder.pid}" in err and "is being written by" in err
    assert touched == []
    assert took < 30  # no connection attempt, no lease expiry wait (generous for a loaded machine)


def test_run_state_lease_beside_an_object_store_refuses_a_second_pod(tmp_path, monkeypatch):
    """Two pods of one schedule have different run folders and, before the first stage, maybe no
    store: they meet at ``<store>.runs/<name>/.lease``, taken before any cluster."""
    store = "memory://ff-bucket/cohort.zarr"
    config = parse_config(_config(tmp_path, store=store))
    remote = runstate.state_url(store, "ff")
    from gexplain.storage.nodes import write_group
    from gexplain.storage.paths import host_name

    other = {
        "token": "other-pod",
        "owner": "gexplain run job.toml",
        "host": f"{host_name()}-pod-2",
        "pid": 7,
        "acquired": time.time(),
        "expires": time.time() + 60,
        "mode": "exclusive",
    }
    write_group(f"{remote}/.lease", {"gexplain_lease": {"holders": {"other-pod": other}}})
    monkeypatch.setattr(runner, "start_runtime", lambda *a, **k: pytest.fail("connected before the lease"))
    with pytest.raises(LeaseHeldError, match="pod-2, pid 7"):
        runner.run_config(config, progress=SILENT)


def test_failure_webhook_is_sent_before_a_failing_mirror_and_the_stage_error_wins(
    tmp_path, monkeypatch, hook, caplog
):
    """The object store is down: the webhook still reports the stage's error, the mirror's error
    is logged after it, and the run ends with the stage's error."""
    cfg = _config(tmp_path, extra=f'[notify]\nhook_url = "{hook.url}"\non = ["failure"]\n')
    config = parse_config(cfg)
    mirrored: list[float] = []
    down: list[bool] = []

    def mirror_down(run_dir, manifest):  # the object store goes down during the stage
        if down:
            mirrored.append(time.monotonic())
            raise ConnectionError("object store at s3://bucket is unreachable")

    def stage_fails(ctx, params):
        down.append(True)
        raise RuntimeError("the stage's own error")

    import dataclasses

    monkeypatch.setattr(runstate, "mirror", mirror_down)
    real = runner.get_stage
    monkeypatch.setattr(runner, "get_stage", lambda kind: dataclasses.replace(real(kind), run=stage_fails))
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="the stage's own error"):
        runner.run_config(config, progress=SILENT, runtime=_local())
    ((sent_at, body),) = hook.received
    assert body["status"] == "failure" and "the stage's own error" in body["error"]
    assert mirrored and mirrored[-1] > sent_at  # the mirror was tried after the webhook
    assert "could not mirror the run state" in caplog.text and "unreachable" in caplog.text
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"][-1]["status"] == "failed"


def _local():
    from gexplain.cluster.runtime import start_runtime

    return start_runtime(num_cpus=1)


def test_hook_url_with_userinfo_is_refused_and_never_logged(tmp_path, caplog, capsys):
    """Issue 20's case: ``user:password@`` in a webhook URL is refused by the config and the CLI,
    and a hand-built section's failing webhook logs the host only."""
    with pytest.raises(ValidationError, match="user:password@"):
        NotifySection(hook_url="https://bob:hunter2@hooks.example.org/x")
    cfg = _config(tmp_path)
    assert main(["run", str(cfg), "--cluster", "local", "--hook-url", "https://bob:hunter2@h.example/x"]) == 2
    assert "user:password@" in " ".join(capsys.readouterr().err.split())
    section = NotifySection.model_construct(
        hook_url="http://bob:hunter2@127.0.0.1:9/services/SECRET", on=["failure"], timeout_s=2.0
    )
    with caplog.at_level(logging.WARNING):
        assert send(section, {"config": {}, "stages": []}, RuntimeError("x")) is False
    assert "notification to http://127.0.0.1:9 failed" in caplog.text
    assert "hunter2" not in caplog.text and "bob" not in caplog.text and "SECRET" not in caplog.text


FORWARDED = {"GX_TEST_SECRET": "s3cr3t-value"}


def test_forwarded_credentials_leave_shared_dask_workers_when_the_run_ends():
    """A real scheduler and worker process on 127.0.0.1 (LocalCluster with processes)."""
    from distributed import Client, LocalCluster
    from gexplain.cluster.runtime import start_runtime

    def probe() -> tuple[str | None, dict]:
        import fsspec.config

        return os.environ.get("GX_TEST_SECRET"), dict(fsspec.config.conf.get("gxtest", {}))

    def setup() -> None:
        import fsspec.config

        fsspec.config.conf["gxtest"] = {"key": os.environ["GX_TEST_SECRET"]}

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        runtime = start_runtime(
            dask_address=cluster.scheduler_address, worker_env=FORWARDED, worker_setup=setup
        )
        during = list(runtime.dask_client.run(probe).values())
        runtime.shutdown()
        with Client(cluster.scheduler_address) as client:
            after = list(client.run(probe).values())
    assert during == [("s3cr3t-value", {"key": "s3cr3t-value"})]
    assert after == [(None, {})]
