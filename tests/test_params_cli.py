"""Every stage's params model against its generated CLI command and against a run config.

For each field of each stage: the CLI exposes it as ``--<field-name>``, with the model's default;
no options on the CLI and no keys in a config give the same parameters; an out-of-range value
exits 2 from the CLI and from ``gexplain run`` with the same problem line.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import gexplain.pipelines.cli.generate as generate
import pytest
import typer.main
from gexplain.pipelines.cli.main import app, main
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.de.stage import DeTest
from gexplain.pipelines.stages import REGISTRY, get_stage
from gexplain.pipelines.standalone import STANDALONE_DEFAULTS
from gexplain.storage.errors import InputError
from pydantic import BaseModel

ROOT = typer.main.get_command(app)

# the least a config / the CLI must give for each stage (required fields)
REQUIRED_CONFIG: dict[str, dict[str, Any]] = {
    "ingest": {"sources": ["x.gct"]},
    "de": {"tests": [{"method": "welch", "contrasts": [["tissue", "a", "b"]]}]},
}
REQUIRED_ARGV: dict[str, list[str]] = {
    "ingest": ["x.gct"],
    "de": ["--method", "welch", "--contrast", "tissue", "a", "b"],
}


def _commands(kind: str) -> list[tuple[list[str], Any]]:
    """(argv prefix, click command) of every command that runs stage ``kind``."""
    if kind == "simulate":
        group = ROOT.load("simulate")
        return [(["simulate", name], cmd) for name, cmd in group.commands.items()]
    return [([kind], ROOT.load(kind))]


def _store_argv(kind: str, tmp: Path) -> list[str]:
    return ["--out", str(tmp / "new.zarr")] if kind in ("simulate", "ingest") else [str(tmp / "s.zarr")]


def _fixed(prefix: list[str]) -> dict[str, Any]:
    return {"simulator": prefix[1]} if prefix[0] == "simulate" else {}


def _option(cmd: Any, flag: str) -> Any | None:
    """The option ``flag`` of ``cmd``, or the positional argument of that field."""
    for param in cmd.params:
        is_argument = param.param_type_name == "argument"
        if flag in param.opts or (is_argument and param.name == flag[2:].replace("-", "_")):
            return param
    return None


def _where(kind: str, flag: str) -> tuple[list[str], Any, Any]:
    for prefix, cmd in _commands(kind):
        param = _option(cmd, flag)
        if param is not None:
            return prefix, cmd, param
    raise AssertionError(f"no `gexplain {kind}` command has the option {flag}")


def _optional_inner(tp: Any) -> Any:
    """``X`` of ``X | None``; other annotations unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _leaf_fields(model: type[BaseModel], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, FieldInfo) of every leaf field, walking nested models as the CLI does."""
    out = []
    for name, info in model.model_fields.items():
        inner = _optional_inner(info.annotation)
        if typing.get_origin(inner) is list and isinstance(typing.get_args(inner)[0], type):
            item = typing.get_args(inner)[0]
            if issubclass(item, BaseModel):
                out += _leaf_fields(item, path)  # a list of models: one item's fields
                continue
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            fields = inner.model_fields.values()
            if not all(f.is_required() and f.annotation is str for f in fields):
                out += _leaf_fields(inner, (*path, name))
                continue
        out.append(((*path, name), info))
    return out


CASES = [
    (kind, path, info)
    for kind in REGISTRY
    for path, info in _leaf_fields(get_stage(kind).params)
    if not (kind == "de" and path == ("tests",))
]
BOUNDED_CASES = [c for c in CASES if c[:2] != ("simulate", ("simulator",))]


def _flag(path: tuple[str, ...]) -> str:
    return "--" + "-".join(path).replace("_", "-")


def _id(case: tuple[str, tuple[str, ...], Any]) -> str:
    return f"{case[0]}:{'.'.join(case[1])}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_the_cli_exposes_every_field_with_its_default(case: tuple[str, tuple[str, ...], Any]) -> None:
    kind, path, info = case
    if (kind, path) == (("simulate"), ("simulator",)):  # one sub-command per simulator
        assert set(ROOT.load("simulate").commands) == set(typing.get_args(info.annotation))
        return
    _, _, param = _where(kind, _flag(path))
    default = info.get_default(call_default_factory=True)
    if len(path) == 1:  # a stage run on its own may default otherwise (explain: keep a result)
        default = STANDALONE_DEFAULTS.get(kind, {}).get(path[0], default)
    shown = param.default
    if info.is_required():
        assert param.required or getattr(param, "nargs", 1) == -1 or shown is None
    elif isinstance(default, list | tuple):
        assert list(shown or []) == [list(x) if isinstance(x, tuple) else x for x in default]
    elif isinstance(default, BaseModel):
        raise AssertionError(f"{path}: nested model not walked")
    else:
        assert shown == default, f"--{path}: CLI default {shown!r}, model default {default!r}"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _config(tmp: Path, kind: str, params: dict[str, Any]) -> Path:
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in params.items())
    path = tmp / "run.toml"
    path.write_text(
        f'[run]\nname = "t"\nout = "{tmp / "run"}"\nstore = "s.zarr"\n\n'
        f'[[stage]]\nkind = "{kind}"\n[stage.params]\n{body}\n'
    )
    return path


def _set(params: dict[str, Any], path: tuple[str, ...], value: Any, kind: str) -> dict[str, Any]:
    out = json.loads(json.dumps(params))
    node = out["tests"][0] if kind == "de" and path[0] in DeTest.model_fields else out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def _bad_value(info: Any) -> Any | None:
    """A value just outside the field's bounds or choices, or None when it has none."""
    for meta in info.metadata:
        number = float if _base(info) is float else int
        if isinstance(meta, annotated_types.Ge):
            return number(meta.ge - 1) if number is int else float(meta.ge) - 0.5
        if isinstance(meta, annotated_types.Gt):
            return number(meta.gt)
        if isinstance(meta, annotated_types.Le):
            return number(meta.le + 1) if number is int else float(meta.le) + 0.5
        if isinstance(meta, annotated_types.Lt):
            return number(meta.lt)
    base = _base(info)
    if typing.get_origin(base) is list:
        base = typing.get_args(base)[0]
    if typing.get_origin(base) is typing.Literal:
        return "not-a-choice"
    return None


def _base(info: Any) -> Any:
    return _optional_inner(info.annotation)


def _is_list(info: Any) -> bool:
    return typing.get_origin(_base(info)) is list


BOUNDED = [c for c in BOUNDED_CASES if _bad_value(c[2]) is not None]


def _problem(text: str, flag: str) -> str:
    """The problem line naming ``flag``, from the key on (``alpha (--alpha 0.0): Input should ...``)."""
    found = re.search(r"([\w.]+ \(" + re.escape(flag) + r" .*?)(?= - |$)", " ".join(text.split()))
    assert found, f"no problem line names {flag}: {text}"
    return found.group(1)


@pytest.mark.parametrize("case", BOUNDED, ids=[_id(c) for c in BOUNDED])
def test_out_of_range_exits_2_from_cli_and_config_with_one_message(
    case: tuple[str, tuple[str, ...], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kind, path, info = case
    bad = _bad_value(info)
    flag = _flag(path)
    prefix, _, _ = _where(kind, flag)

    def never(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("the stage ran despite a bad option")

    monkeypatch.setattr(generate, "run_stage", never)
    argv = [*prefix, *_store_argv(kind, tmp_path), *REQUIRED_ARGV.get(kind, []), flag, str(bad)]
    assert main(argv) == 2
    from_cli = _problem(capsys.readouterr().err, flag)
    value = [bad] if _is_list(info) else bad
    params = _set({**REQUIRED_CONFIG.get(kind, {}), **_fixed(prefix)}, path, value, kind)
    cfg = _config(tmp_path, kind, params)
    assert main(["run", str(cfg)]) == 2
    from_config = _problem(capsys.readouterr().err, flag)
    assert from_cli == from_config
    assert not (tmp_path / "run").exists() and not (tmp_path / "new.zarr").exists()


@pytest.mark.parametrize("kind", list(REGISTRY))
def test_no_options_give_the_params_of_an_empty_config(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def record(kind: str, params: Any, store: str, **kwargs: Any) -> dict[str, Any]:
        seen.append(params)
        raise typer.Exit(0)

    monkeypatch.setattr(generate, "run_stage", record)
    for prefix, _ in _commands(kind):
        argv = [*prefix, *_store_argv(kind, tmp_path), *REQUIRED_ARGV.get(kind, [])]
        assert main(argv) == 0, argv
        cfg = parse_config(_config(tmp_path, kind, {**REQUIRED_CONFIG.get(kind, {}), **_fixed(prefix)}))
        # the same params, but for the standalone defaults (a stage run on its own replaces nothing)
        assert seen[-1] == cfg.stages[0].params.model_copy(update=STANDALONE_DEFAULTS.get(kind, {}))


@pytest.mark.parametrize("bad", ["..", ".", "../../x", "a/b", "-x", ""])
def test_every_name_follows_the_one_rule(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s.zarr")
    for argv in (
        ["evaluate", store, "--name", bad],
        ["train", store, "--model-set", bad],
        ["explain", store, "--name", bad],
        ["report", store, "--evaluation", bad],
    ):
        if bad == "" and argv[2] != "--model-set":
            continue  # '' means "the default" there
        assert main(argv) == 2, argv
        assert "not a valid name" in capsys.readouterr().err
    cfg = _config(tmp_path, "evaluate", {"name": bad})
    with pytest.raises(InputError, match="not a valid name"):
        parse_config(cfg)
    assert list(tmp_path.iterdir()) == [cfg]


def test_a_config_name_cannot_leave_the_run_folder(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "evaluate", {"name": "../../../evil"})
    assert main(["run", str(cfg)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


def test_unwritable_output_exits_2_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # /proc accepts no new files, whoever runs the test (root included)
    assert main(["simulate", "cohort", "--out", "/proc/gexplain-test.zarr", "--samples", "10"]) == 2
    assert "/proc/gexplain-test.zarr" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if _can_write(locked):
        pytest.skip("running as a user that ignores permissions")
    assert main(["simulate", "cohort", "--out", str(locked / "x.zarr"), "--samples", "10"]) == 2
    assert str(locked) in " ".join(capsys.readouterr().err.split())


def _can_write(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


NO_RUNTIME = {"ingest", "report"}  # they compute on neither Ray nor Dask


def test_runtime_options_are_the_same_for_every_computing_command() -> None:
    """Every command that computes takes the same runtime options; the others take none."""
    flags = {"--cluster", "--dask", "--num-cpus", "--num-gpus"}
    for kind in REGISTRY:
        for prefix, cmd in _commands(kind):
            have = {o for p in cmd.params for o in getattr(p, "opts", [])}
            if kind in NO_RUNTIME:
                assert not flags & have, prefix
            else:
                assert flags <= have, prefix
    run_flags = {o for p in ROOT.load("run").params for o in getattr(p, "opts", [])}
    assert flags <= run_flags


def test_help_names_every_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich would shorten long option names to fit a narrow terminal
    assert main(["train", "--help"]) == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    for flag in ("--max-epochs", "--epochs", "--unlabelled", "--ray", "--no-ray", "--cluster"):
        assert flag in text


def test_messages_name_only_flags_that_exist() -> None:
    """Every ``--flag`` written in the code's messages is an option of some command."""
    flags: set[str] = set()

    def walk(cmd: Any) -> None:
        for param in cmd.params:
            flags.update(param.opts, getattr(param, "secondary_opts", []))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    flags.add("--help")  # every command's, added by click
    walk(ROOT)
    for name in ROOT.list_commands(None):  # commands are built when named
        walk(ROOT.load(name))
    root = Path(__file__).resolve().parents[1]
    unknown = []
    for path in sorted(root.glob("*/**/*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] not in ("pipelines", "storage", "cluster"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = re.sub(r"`(ray|dask|docker|kubectl) [^`]*`", "", line)  # other tools' commands
            for found in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9](?![\w{-])", line):
                if found not in flags:
                    unknown.append(f"{rel}:{number}: {found}")
    assert not unknown, unknown


@pytest.mark.parametrize("store", ["foo://bucket/x.zarr", "s3://", ""])
def test_store_locations_follow_one_rule(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["normalize", store]) == 2
    assert main(["simulate", "cohort", "--out", store, "--samples", "10"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "STORE" in err and "--out" in err
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[run]\nname = "t"\nout = "o"\nstore = "{store}"\n')
    with pytest.raises(InputError, match="run.store"):
        parse_config(cfg)


def test_runtime_options_override_the_config_cluster_section() -> None:
    from gexplain.pipelines.config import ClusterSection

    base = ClusterSection(address="auto", num_cpus=2)
    dask = base.override({"address": "tcp://sched:8786"})  # --cluster tcp://...: only Dask changes
    assert (dask.address, dask.dask_address, dask.num_cpus) == ("auto", "tcp://sched:8786", 2)
    local = base.override({"address": "local", "num_gpus": 1})
    assert (local.address, local.num_gpus) == ("", 1)
    with pytest.raises(InputError, match="--cluster 'head'"):
        base.override({"address": "head"})
