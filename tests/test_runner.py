"""Run config validation, stage runner skip/rerun, manifest, and CLI exit codes."""

from __future__ import annotations

import json
import textwrap

import pytest
from gexplain.pipelines import stages as stage_registry
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.progress import SILENT
from gexplain.pipelines.runner import read_manifest, run_config
from gexplain.storage.errors import InputError

PROBE = textwrap.dedent("""
    import json, numpy as np
    from pathlib import Path
    from gexplain.pipelines.stages import Stage, StageParams
    from gexplain.storage.store import create_store, exists

    class Params(StageParams):
        value: int = 1
        path: str = ""

    def run(ctx, params):
        log = Path(ctx.run_dir) / "calls.jsonl"
        with log.open("a") as fh:
            fh.write(json.dumps({"stage": ctx.stage_name, "value": params.value}) + "\\n")
        if not exists(ctx.store_url):
            w = create_store(ctx.store_url, sample_ids=np.array(["a"]), gene_ids=np.array(["g"]), layers={})
            w.commit()
        return {"value": params.value}

    STAGE = Stage(kind="probe", params=Params, run=run, inputs=lambda p: [p.path] if p.path else [])
""")


@pytest.fixture()
def probe(tmp_path, monkeypatch):
    (tmp_path / "probe_stage.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(stage_registry.REGISTRY, "probe", "probe_stage")
    return tmp_path


def _config(path, a=1, b=2, c=3, extra=""):
    path.write_text(
        textwrap.dedent(f'''
        [run]
        name = "t"
        out = "{path.parent / "run"}"
        store = "store.zarr"
        seed = 3
        [[stage]]
        kind = "probe"
        name = "first"
        params = {{ value = {a} }}
        [[stage]]
        kind = "probe"
        name = "second"
        params = {{ value = {b} }}
        [[stage]]
        kind = "probe"
        name = "third"
        params = {{ value = {c} }}
        {extra}
    ''')
    )
    return path


def _calls(run_dir):
    return [json.loads(line)["stage"] for line in (run_dir / "calls.jsonl").read_text().splitlines()]


def test_skip_and_rerun_from_changed_stage(probe, local_runtime):
    cfg_path = _config(probe / "c.toml")
    out = run_config(parse_config(cfg_path), progress=SILENT, runtime=local_runtime)
    assert out["ran"] == ["first", "second", "third"]
    run_dir = probe / "run"
    again = run_config(parse_config(cfg_path), progress=SILENT, runtime=local_runtime)
    assert again["ran"] == [] and again["skipped"] == ["first", "second", "third"]
    _config(cfg_path, b=20)
    third = run_config(parse_config(cfg_path), progress=SILENT, runtime=local_runtime)
    assert third["skipped"] == ["first"] and third["ran"] == ["second", "third"]
    assert _calls(run_dir) == ["first", "second", "third", "second", "third"]
    manifest = read_manifest(run_dir)
    assert [s["status"] for s in manifest["stages"]] == ["done"] * 3
    assert manifest["stages"][1]["outputs"] == {"value": 20}
    assert manifest["versions"]["torch"].startswith("2.13.0")
    assert all("wall_s" in s and "peak_rss_mb" in s for s in manifest["stages"])


def test_changed_input_file_reruns_its_stage(probe, local_runtime):
    data = probe / "input.txt"
    data.write_text("v1")
    cfg_path = _config(probe / "c.toml")
    cfg_path.write_text(cfg_path.read_text().replace("value = 2", f'value = 2, path = "{data}"'))
    assert run_config(parse_config(cfg_path), progress=SILENT, runtime=local_runtime)["ran"] == [
        "first",
        "second",
        "third",
    ]
    assert run_config(parse_config(cfg_path), progress=SILENT, runtime=local_runtime)["ran"] == []
    data.write_text("version 2")
    out = run_config(parse_config(cfg_path), progress=SILENT, runtime=local_runtime)
    assert out["skipped"] == ["first"] and out["ran"] == ["second", "third"]


def test_unknown_keys_name_the_key(probe):
    cfg = _config(probe / "c.toml", extra='[cluster]\nadress = "auto"\n')
    with pytest.raises(InputError, match=r"unknown key 'cluster.adress' \(allowed here: address"):
        parse_config(cfg)
    cfg.write_text(cfg.read_text().replace('adress = "auto"', "").replace("value = 2", "valu = 2"))
    with pytest.raises(InputError, match=r"stage\[1\].params.valu.*allowed here: value"):
        parse_config(cfg)


def test_unknown_stage_kind(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nname="t"\nout="o"\nstore="s.zarr"\n[[stage]]\nkind="bogus"\n')
    with pytest.raises(InputError, match="unknown stage kind 'bogus'; known kinds: simulate"):
        parse_config(cfg)


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    assert "no store at" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["--help"]) == 0


def test_force_reruns_everything_from_the_cli(probe, monkeypatch):
    cfg = _config(probe / "c.toml")
    monkeypatch.chdir(probe)
    assert main(["run", str(cfg)]) == 0
    assert main(["run", str(cfg)]) == 0
    assert _calls(probe / "run") == ["first", "second", "third"]
    assert main(["run", str(cfg), "--force"]) == 0
    assert _calls(probe / "run") == ["first", "second", "third"] * 2


def test_cluster_addresses_are_routed_and_checked(probe):
    from gexplain.pipelines.config import route_cluster_address

    assert route_cluster_address("auto") == ("auto", None)
    assert route_cluster_address("ray://head:10001") == ("ray://head:10001", None)
    assert route_cluster_address("tcp://sched:8786") == (None, "tcp://sched:8786")
    assert route_cluster_address("127.0.0.1:6380") == ("127.0.0.1:6380", None)  # Ray's own host:port form
    with pytest.raises(InputError, match="--cluster 'head'"):
        route_cluster_address("head")
    # the config's address follows the same rule as --cluster: a Dask scheduler goes to dask_address
    cfg = parse_config(_config(probe / "c.toml", extra='[cluster]\naddress = "tcp://sched:8786"\n'))
    assert (cfg.cluster.address, cfg.cluster.dask_address) == ("", "tcp://sched:8786")
    cfg = _config(probe / "c.toml", extra='[cluster]\naddress = "tcp://a:1"\ndask_address = "tcp://b:2"\n')
    with pytest.raises(InputError, match="cluster.*give the scheduler once"):
        parse_config(cfg)


def test_info_describes_a_store(tmp_path, capsys):
    import numpy as np
    from gexplain.pipelines.cli.info import describe_store
    from gexplain.storage.store import create_store

    url = str(tmp_path / "s.zarr")
    w = create_store(
        url,
        sample_ids=np.array(["a", "b", "c"]),
        gene_ids=np.array(["g1", "g2"]),
        coords={"sample_tissue": ("sample", np.array(["lung", "lung", "liver"]))},
        layers={"counts": "int32"},
        attrs={"label_column": "sample_tissue"},
    )
    w.commit()
    d = describe_store(url)
    assert d["dims"] == {"sample": 3, "gene": 2}
    assert d["layers"] == [{"name": "counts", "dtype": "int32", "units": "reads"}]
    assert d["labels"]["sample_tissue"] == {"levels": 2, "top": {"lung": 2, "liver": 1}, "missing": 0}
    assert d["attrs"]["label_column"] == "sample_tissue"
    assert main(["info", url]) == 0
    assert "sample_tissue" in capsys.readouterr().out


def test_manifest_config_masks_credentials() -> None:
    """Storage option values and the webhook's path, query and user info never reach manifests."""
    import json

    from gexplain.pipelines.runner import redacted

    raw = {
        "run": {"name": "r"},
        "storage": {"options": {"key": "AKIAEXAMPLE", "secret": "s3cr3t"}, "forward_env": ["AWS_REGION"]},
        "notify": {"hook_url": "https://user:pw@hooks.example.org/T0/B1/XYZ?token=abc", "on": ["failure"]},
    }
    before = json.dumps(raw)
    out = redacted(raw)
    text = json.dumps(out)
    for secret in ("AKIAEXAMPLE", "s3cr3t", "XYZ", "abc", "pw"):
        assert secret not in text
    assert out["storage"] == {"options": {"key": "***", "secret": "***"}, "forward_env": ["AWS_REGION"]}
    assert out["notify"] == {"hook_url": "https://hooks.example.org/***", "on": ["failure"]}
    assert json.dumps(raw) == before  # the config itself is untouched
