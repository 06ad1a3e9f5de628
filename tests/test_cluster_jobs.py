"""Scheduled-job support: storage options everywhere, run.out URLs, run state beside the store, webhooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
import pytest
from gexplain.cluster import runtime as cluster_runtime
from gexplain.pipelines import stages as stage_registry
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.environment import parse_storage_option, prepare
from gexplain.pipelines.progress import SILENT
from gexplain.pipelines.runner import run_config
from gexplain.storage.errors import InputError
from gexplain.storage.options import forwarded_environment, set_storage_options

PROBE = textwrap.dedent("""
    import json, numpy as np
    from pathlib import Path
    from gexplain.pipelines.stages import Stage, StageParams
    from gexplain.storage.store import create_store, exists

    class Params(StageParams):
        value: int = 1
        fail: bool = False

    def run(ctx, params):
        if params.fail:
            raise RuntimeError("probe failed on purpose")
        with (Path(ctx.run_dir) / "calls.jsonl").open("a") as fh:
            fh.write(json.dumps({"stage": ctx.stage_name}) + "\\n")
        (Path(ctx.run_dir) / f"{ctx.stage_name}.csv").write_text(f"value\\n{params.value}\\n")
        if not exists(ctx.store_url):
            create_store(ctx.store_url, sample_ids=np.array(["a"]), gene_ids=np.array(["g"]), layers={}).commit()
        return {"value": params.value}

    STAGE = Stage(kind="jobprobe", params=Params, run=run)
""")


@pytest.fixture()
def probe(tmp_path, monkeypatch):
    (tmp_path / "jobprobe_stage.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(stage_registry.REGISTRY, "jobprobe", "jobprobe_stage")
    return tmp_path


def _config(path, *, out, store, extra="", fail_third=False, second=2):
    path.write_text(
        textwrap.dedent(f'''
        [run]
        name = "nightly"
        out = "{out}"
        store = "{store}"
        [[stage]]
        kind = "jobprobe"
        name = "first"
        [[stage]]
        kind = "jobprobe"
        name = "second"
        params = {{ value = {second} }}
        [[stage]]
        kind = "jobprobe"
        name = "third"
        params = {{ fail = {"true" if fail_third else "false"} }}
        ''')
        + textwrap.dedent(extra)
    )
    return path


# -- storage options ---------------------------------------------------------------------------------


def test_storage_options_reach_every_new_filesystem_and_worker_processes(monkeypatch):
    pytest.importorskip("s3fs")
    monkeypatch.setattr(fsspec.config, "conf", {})
    endpoint = "http://127.0.0.1:9/never-contacted"
    env = set_storage_options("s3://bucket/cohort.zarr", {"endpoint_url": endpoint, "anon": True})
    try:
        assert env == {"FSSPEC_S3": json.dumps({"anon": True, "endpoint_url": endpoint}, sort_keys=True)}
        fs = fsspec.filesystem("s3")  # any opener in this process: no options passed
        assert fs.endpoint_url == endpoint and fs.anon is True
        # a worker process started with only these variables opens the store the same way
        code = "import fsspec; fs = fsspec.filesystem('s3'); print(fs.endpoint_url, fs.anon)"
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PATH": os.environ["PATH"], **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == [endpoint, "True"]
        bare = subprocess.run(  # and one started without them does not: the options must travel
            [sys.executable, "-c", code],
            env={"PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert bare == ["None", "False"]
    finally:
        set_storage_options("s3://bucket/cohort.zarr", {})
    assert "FSSPEC_S3" not in os.environ
    assert "endpoint_url" not in fsspec.filesystem("s3", skip_instance_cache=True).storage_options


def test_storage_options_refuse_local_stores_and_missing_variables(monkeypatch):
    with pytest.raises(InputError, match=r"\[storage\] options \['anon'\].*local path"):
        set_storage_options("/data/cohort.zarr", {"anon": True})
    monkeypatch.delenv("GX_NOT_SET", raising=False)
    monkeypatch.setenv("GX_SET", "v")
    assert forwarded_environment(["GX_SET"]) == {"GX_SET": "v"}
    with pytest.raises(InputError, match="forward_env names \\['GX_NOT_SET'\\]"):
        forwarded_environment(["GX_SET", "GX_NOT_SET"])


def test_storage_option_cli_values_are_typed():
    assert parse_storage_option("anon=true") == ("anon", True)
    assert parse_storage_option("max_concurrency=4") == ("max_concurrency", 4)
    assert parse_storage_option("endpoint_url=http://h:9000") == ("endpoint_url", "http://h:9000")
    with pytest.raises(InputError, match="--storage-option 'anon'"):
        parse_storage_option("anon")


def test_prepare_hands_storage_and_forwarded_variables_to_workers(probe, monkeypatch):
    monkeypatch.setattr(fsspec.config, "conf", {})
    monkeypatch.setenv("GX_TOKEN", "secret-value")
    cfg = _config(
        probe / "c.toml",
        out=probe / "run",
        store="memory://gx/cohort.zarr",
        extra="""
        [storage]
        options = { skip_instance_cache = false }
        forward_env = ["GX_TOKEN"]
        """,
    )
    try:
        env = prepare(parse_config(cfg))
        assert env == {"FSSPEC_MEMORY": '{"skip_instance_cache": false}', "GX_TOKEN": "secret-value"}
        runtime = cluster_runtime.start_runtime(num_cpus=1)
        assert runtime.worker_env == env
        assert runtime._runtime_env() == {"env_vars": env}  # what every Ray worker of the job starts with
        assert runtime.describe()["worker_env"] == ["FSSPEC_MEMORY", "GX_TOKEN"]  # names only in manifests
    finally:
        cluster_runtime.set_default_worker_env({})
        set_storage_options("memory://gx", {})


def test_run_out_url_exits_2_and_writes_nothing(probe, monkeypatch, capsys):
    monkeypatch.chdir(probe)
    cfg = _config(probe / "c.toml", out="s3://bucket/runs/nightly", store="s3://bucket/cohort.zarr")
    assert main(["run", str(cfg)]) == 2
    assert "run.out 's3://bucket/runs/nightly' is a URL" in capsys.readouterr().err
    assert not (probe / "s3:").exists()


# -- run state beside the store ----------------------------------------------------------------------


def test_fresh_machine_rerun_skips_every_finished_stage(probe, local_runtime):
    store = f"memory://gx-{uuid.uuid4().hex}/cohort.zarr"
    first = parse_config(_config(probe / "a.toml", out=probe / "pod1", store=store))
    out = run_config(first, progress=SILENT, runtime=local_runtime)
    assert out["ran"] == ["first", "second", "third"]
    mirrored = fsspec.filesystem("memory").find(f"{store[len('memory://') :]}.runs/nightly")
    assert {p.rsplit("/", 1)[1] for p in mirrored} >= {"manifest.json", "calls.jsonl", "second.csv"}

    # a new pod: an empty run folder elsewhere, same config and store
    second = parse_config(_config(probe / "b.toml", out=probe / "pod2", store=store))
    again = run_config(second, progress=SILENT, runtime=local_runtime)
    assert again["ran"] == [] and again["skipped"] == ["first", "second", "third"]
    assert (probe / "pod2" / "second.csv").read_text() == "value\n2\n"  # outputs come back too
    # a changed stage reruns from there on, as on one machine
    changed = parse_config(_config(probe / "c.toml", out=probe / "pod3", store=store, second=5))
    third = run_config(changed, progress=SILENT, runtime=local_runtime)
    assert third["ran"] == ["second", "third"] and third["skipped"] == ["first"]


def test_local_store_mirrors_nothing(probe, local_runtime):
    cfg = parse_config(_config(probe / "a.toml", out=probe / "run", store=str(probe / "cohort.zarr")))
    run_config(cfg, progress=SILENT, runtime=local_runtime)
    assert not (probe / "cohort.zarr.runs").exists()


# -- webhook notifications ---------------------------------------------------------------------------


class _Hook:
    def __init__(self) -> None:
        received: list[tuple[str, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                return

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook():
    server = _Hook()
    yield server
    server.close()


def test_webhook_gets_the_summary_on_success(probe, local_runtime, hook):
    extra = f'\n[notify]\nhook_url = "{hook.url}"\n'
    cfg = parse_config(_config(probe / "c.toml", out=probe / "run", store=str(probe / "s.zarr"), extra=extra))
    run_config(cfg, progress=SILENT, runtime=local_runtime)
    ((ctype, body),) = hook.received
    manifest = json.loads((probe / "run" / "manifest.json").read_text())
    assert ctype == "application/json"
    assert body["status"] == "success" and body["run"] == "nightly" and body["error"] is None
    assert [s["name"] for s in body["stages"]] == ["first", "second", "third"]
    assert all(s["status"] == "done" for s in body["stages"])
    assert body["started"] == manifest["started"] and body["finished"] == manifest["finished"]
    assert body["store"] == manifest["store"]


def test_webhook_gets_the_summary_on_failure_and_the_cli_still_fails(probe, monkeypatch, hook):
    monkeypatch.chdir(probe)
    cfg = _config(probe / "c.toml", out=probe / "run", store=str(probe / "s.zarr"), fail_third=True)
    assert main(["run", str(cfg), "--cluster", "local", "--hook-url", hook.url]) == 1
    ((_, body),) = hook.received
    assert body["status"] == "failure"
    assert body["error"] == "RuntimeError: probe failed on purpose"
    assert [(s["name"], s["status"]) for s in body["stages"]] == [
        ("first", "done"),
        ("second", "done"),
        ("third", "failed"),
    ]


def test_webhook_that_is_down_does_not_change_the_outcome(probe, local_runtime, caplog):
    from cluster_procs import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    extra = f'\n[notify]\nhook_url = "{url}"\ntimeout_s = 2\n'
    cfg = parse_config(_config(probe / "c.toml", out=probe / "run", store=str(probe / "s.zarr"), extra=extra))
    out = run_config(cfg, progress=SILENT, runtime=local_runtime)
    assert out["ran"] == ["first", "second", "third"]
    assert "notification to http://127.0.0.1" in caplog.text


def test_unreachable_cluster_is_notified_before_any_stage(probe, hook, monkeypatch):
    from cluster_procs import free_port

    monkeypatch.chdir(probe)
    cfg = _config(probe / "c.toml", out=probe / "run", store=str(probe / "s.zarr"))
    address = f"127.0.0.1:{free_port()}"
    assert main(["run", str(cfg), "--cluster", address, "--hook-url", hook.url]) == 1
    ((_, body),) = hook.received
    assert body["status"] == "failure" and address in body["error"] and body["stages"] == []
    assert not (probe / "run" / "calls.jsonl").exists()


def test_stage_commands_take_storage_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every computing command applies --storage-option before any work (here: refused for a local path)."""
    from gexplain.pipelines.cli.main import main

    out = tmp_path / "s.zarr"
    args = ["simulate", "cohort", "--out", str(out), "--samples", "12", "--genes", "20", "--classes", "2"]
    assert main([*args, "--storage-option", "anon=true"]) == 2
    assert "apply to object-store URLs" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()
    assert main([*args, "--forward-env", "NOT A NAME"]) == 2
    assert "--forward-env" in capsys.readouterr().err
