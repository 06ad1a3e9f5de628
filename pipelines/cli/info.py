"""``gexplain info STORE``: what a store holds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import typer
from gexplain.pipelines.cli.show import summary
from gexplain.pipelines.labels import MISSING_LABELS
from gexplain.storage.checkpoints import model_set_states
from gexplain.storage.ingest.provenance import summarise_sources
from gexplain.storage.integrity import last_verification
from gexplain.storage.lease import describe, scope_holders
from gexplain.storage.schema import layer_names, spec_for
from gexplain.storage.store import layer_chunks, list_results, open_store, result_states
from rich.console import Console
from rich.table import Table


def describe_store(url: str) -> dict:
    """Return a JSON-serialisable description of a store.

    Parameters
    ----------
    url
        Store path or URL.

    Returns
    -------
    dict
        ``dims``, ``layers`` (name, dtype, units), ``chunks``, ``labels`` (sample columns: number
        of levels, up to 20 level counts, and ``missing``, the samples without a value: empty
        strings and NaN are missing labels, not a level), ``inputs`` (count, total bytes and one
        digest of the files an ingest read; the full list is ``attrs["sources"]``),
        ``gene_annotations``, ``truth``, ``results`` (complete ones),
        ``result_states`` and ``models`` (each with ``state``: complete, incomplete (resumable) or
        running, and the running writer as ``holder``), ``writer`` (who holds the store's lease),
        ``attrs`` (provenance).
    """
    ds = open_store(url)
    labels = {}
    for name in ds.data_vars:
        var = ds[name]
        if var.dims == ("sample",) and str(name).startswith("sample_"):
            values = pd.Series(var.values)
            text = values.astype(str).str.strip()
            missing = values.isna().to_numpy() | text.isin(MISSING_LABELS).to_numpy()
            counts = text[~missing].value_counts()
            labels[str(name)] = {
                "levels": int(counts.size),
                "top": counts.head(20).to_dict(),
                "missing": int(np.count_nonzero(missing)),
            }
    layers = []
    for name in layer_names(ds):
        spec = spec_for(name)
        layers.append({"name": name, "dtype": str(ds[name].dtype), "units": spec.units if spec else ""})
    return {
        "store": url,
        "inputs": summarise_sources(ds.attrs.get("sources", [])),
        "dims": {k: int(v) for k, v in ds.sizes.items()},
        "layers": layers,
        "chunks": layer_chunks(ds),
        "labels": labels,
        "gene_annotations": [str(n) for n in ds.data_vars if str(n).startswith("gene_")],
        "truth": [str(n) for n in ds.data_vars if str(n).startswith("truth_")],
        "results": list_results(url),
        "result_states": result_states(url),
        "models": _model_states(url),
        "writer": (scope_holders(url, "store") or [None])[0],
        "verification": last_verification(url),
        "attrs": dict(ds.attrs),
    }


def _model_states(url: str) -> list[dict]:
    out = []
    for entry in model_set_states(url):
        holders = scope_holders(url, f"models/{entry['name']}")
        running = bool(holders) and entry["state"] != "complete"
        out.append(
            {
                **entry,
                "state": "running" if running else entry["state"],
                "holder": holders[0] if running else None,
            }
        )
    return out


def register(app: typer.Typer) -> None:
    """Add the ``info`` command to ``app``."""

    @app.command("info")
    def info(
        store: str = typer.Argument(..., help="Store path or URL."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        inputs: bool = typer.Option(
            False, "--inputs", help="List every input file (path, size, sha256) instead of their summary."
        ),
    ) -> None:
        """Show the dims, layers, labels, chunking, inputs, provenance and results of a store."""
        d = describe_store(store)
        sources = d["attrs"].get("sources", [])
        if as_json:
            typer.echo(json.dumps(d if inputs else _without_sources(d), indent=2, default=str))
            return
        con = Console()
        con.print(
            f"[bold]{store}[/bold]  samples={d['dims'].get('sample')}  genes={d['dims'].get('gene')}  "
            f"chunks={d['chunks']}"
        )
        t = Table("layer", "dtype", "units")
        for layer in d["layers"]:
            t.add_row(layer["name"], layer["dtype"], layer["units"])
        con.print(t)
        t = Table("sample column", "levels", "missing", "most frequent")
        for name, lab in d["labels"].items():
            top = ", ".join(f"{k} ({v})" for k, v in list(lab["top"].items())[:5])
            t.add_row(name, str(lab["levels"]), str(lab["missing"]), top)
        con.print(t)
        if d["truth"]:
            con.print("ground truth: " + ", ".join(d["truth"]))
        t = Table("model set / result", "state", "detail")
        for m in d["models"]:
            detail = f"replicates {m['replicates']}" + (
                f"; writer {describe(m['holder'])}" if m["holder"] else ""
            )
            t.add_row(f"models/{m['name']}", m["state"], detail)
        for r in d["result_states"]:
            detail = f"writer {describe(r['holder'])}" if r["holder"] else ""
            if r["state"] == "incomplete":
                detail = "interrupted; rerun its stage to resume"
            t.add_row(f"results/{r['name']}", r["state"], detail)
        con.print(t)
        if d["writer"]:
            con.print(f"being written by {describe(d['writer'])}")
        check = d["verification"]
        con.print(
            f"last verification: {check['state']} at {check['at']} ({check['arrays']} arrays, {check['chunks']} chunks)"
            if check
            else "last verification: never (run `gexplain verify STORE`)"
        )
        if inputs:
            t = Table("input", "bytes", "sha256")
            for entry in sources:
                t.add_row(entry["path"], str(entry.get("bytes", "")), entry["sha256"])
            con.print(t)
        elif sources:
            summary("inputs", _inputs_rows(d["inputs"]))
        prov = {k: v for k, v in d["attrs"].items() if k not in ("gexplain_variables", "sources")}
        con.print("provenance: " + json.dumps(prov, default=str)[:2000], soft_wrap=True)


def _inputs_rows(inputs: dict) -> list[tuple[str, object]]:
    size = inputs["bytes"]
    return [
        ("files", f"{inputs['count']:,}" + (f", {size / 2**20:,.1f} MiB" if size is not None else "")),
        ("digest", f"{inputs['digest']} (sha256 of the files' sha256s; list them with --inputs)"),
    ]


def _without_sources(d: dict) -> dict:
    """The description without the per-file list (``--inputs`` keeps it)."""
    return {**d, "attrs": {k: v for k, v in d["attrs"].items() if k != "sources"}}
