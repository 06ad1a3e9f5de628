"""Model fields as typer options: the one adapter between a pydantic params model and the CLI.

Every field becomes an option ``--<field-name>`` (underscores as dashes; a nested model's fields as
``--<field>-<sub>``; a list of models, such as DE's ``tests``, as one item's fields) with the
model's default and description, plus the aliases the field declares with
:func:`gexplain.pipelines.params.cli`. :func:`collect` turns the options given on the command line back into
raw model values, so the model checks them exactly as it checks a config.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import typer
from gexplain.pipelines.cli.panels import METHOD, panel_of
from gexplain.pipelines.params import flag
from gexplain.storage.errors import InputError
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from typer._click.core import ParameterSource  # typer vendors its own click
from typer._click.globals import get_current_context
from typer.core import TyperCommand

Kind = Literal["bool", "scalar", "list", "tuple", "tuples", "choice_or_list", "json"]


@dataclass(frozen=True)
class CliField:
    """One model field as a CLI option.

    Attributes
    ----------
    path
        Keys from the model root to the value; ``0`` stands for the one item of a list of models.
    param
        The Python parameter name in the generated signature.
    flags
        ``--<field-name>`` first, then the declared aliases.
    kind
        How the command-line text becomes the model's value.
    annotation
        The type typer parses the option as.
    default
        The model's default (``PydanticUndefined`` when required).
    help
        The field's description (plus the allowed choices).
    argument
        A positional argument rather than an option.
    presets
        Shorthand flags setting the field to a value.
    names
        For ``tuple`` fields: the nested model's field names, in order.
    width
        Values per occurrence of a ``tuples`` option (``--contrast COLUMN TEST REF``: 3).
    choices
        The allowed values (shown as the metavar; the model checks them).
    panel
        The help panel (:func:`gexplain.pipelines.cli.panels.panel_of`).
    """

    path: tuple[str | int, ...]
    param: str
    flags: tuple[str, ...]
    kind: Kind
    annotation: Any
    default: Any
    help: str
    argument: bool = False
    presets: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    width: int = 1
    choices: tuple[Any, ...] = ()
    panel: str = METHOD


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, optional) of ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _choices(tp: Any) -> list[Any]:
    return list(typing.get_args(tp)) if typing.get_origin(tp) is Literal else []


def _help(description: str | None) -> str:
    text = (description or "").strip()
    return text[:1].upper() + text[1:] if text else ""


def cli_fields(model: type[BaseModel], *, include: set[str] | None = None) -> list[CliField]:
    """The CLI options of ``model`` (fields in ``include`` only, at the top level, when given)."""
    return _fields(model, (), (), include, False)


def _fields(
    model: type[BaseModel],
    path: tuple[str | int, ...],
    prefix: tuple[str, ...],
    include: set[str] | None,
    optional_parent: bool,
) -> list[CliField]:
    out: list[CliField] = []
    for name, info in model.model_fields.items():
        if include is not None and name not in include:
            continue
        tp, optional = _unwrap(info.annotation)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        key = (*prefix, name)
        width = 1
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is list and args and _is_model(args[0]):
            out += _fields(args[0], (*path, name, 0), prefix, None, optional_parent)  # the CLI sets one item
            continue
        if _is_model(tp):
            sub = tp.model_fields
            if all(f.is_required() and f.annotation is str for f in sub.values()):
                kind: Kind = "tuple"
                annotation: Any = Optional[tuple[(str,) * len(sub)]]  # type: ignore[misc]  # noqa: UP045
            else:
                out += _fields(tp, (*path, name), key, None, optional_parent or not info.is_required())
                continue
        elif tp is bool:
            kind, annotation = "bool", bool
        elif tp in (int, float, str) or _choices(tp):
            kind, annotation = "scalar", (tp if tp in (int, float, str) else str)
        elif origin in (Union, types.UnionType) and any(_choices(a) for a in args):
            kind, annotation = "choice_or_list", str
        elif origin is list and args and typing.get_origin(_unwrap(args[0])[0]) is tuple:
            width = len(typing.get_args(_unwrap(args[0])[0]))
            kind, annotation = "tuples", Optional[tuple[(str,) * width]]  # type: ignore[misc]  # noqa: UP045
        elif origin is list:
            kind, annotation = "list", Optional[list[str]]  # noqa: UP045
        else:
            kind, annotation = "json", str
        choices = tuple(_choices(tp) or (_choices(args[0]) if kind == "list" and args else ()))
        default = info.get_default(call_default_factory=True)
        if optional_parent and default is PydanticUndefined:
            default, optional = None, True  # required only once the optional parent is given
        if optional and kind == "scalar":
            annotation = Optional[annotation]  # noqa: UP045
        out.append(
            CliField(
                path=(*path, name),
                param="__".join(key),
                flags=(flag(".".join(key)), *extra.get("cli_aliases", [])),
                kind=kind,
                annotation=annotation,
                default=default,
                help=_help(info.description),
                argument=bool(extra.get("cli_argument")),
                presets=dict(extra.get("cli_presets", {})),
                names=tuple(tp.model_fields) if kind == "tuple" else (),
                width=width,
                choices=choices,
                panel=panel_of(str(key[0])),
            )
        )
    return out


def _shown_default(f: CliField) -> Any:
    if f.default is PydanticUndefined:
        return ...
    if f.kind in ("list", "tuples"):
        return list(f.default) if f.default else None
    if f.kind in ("choice_or_list", "json") and not isinstance(f.default, str):
        return json.dumps(f.default)
    return f.default


_TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT"}


def _metavar(f: CliField) -> str:
    """The option's value as help shows it: its type, or its choices (listed here only)."""
    if f.kind == "tuple":
        return " ".join(n.upper() for n in f.names)
    if f.kind == "tuples":
        return " ".join(["TEXT"] * f.width)
    if f.choices:
        return "|".join(map(str, f.choices)) + ("[,...]" if f.kind == "list" else "")
    if f.kind == "list":
        return "TEXT[,TEXT...]"
    if f.kind == "json":
        return "JSON"
    if f.kind == "choice_or_list":
        return "TEXT"
    inner = _unwrap(f.annotation)[0]
    return _TYPE_NAMES.get(inner, "TEXT")


def option_parameters(fields: list[CliField]) -> list[inspect.Parameter]:
    """The typer parameters of ``fields`` (plus one boolean flag per preset)."""
    params = []
    for f in fields:
        default = _shown_default(f)
        if f.argument:
            spec: Any = typer.Argument(
                default,
                help=f.help,
                show_default=default is not ...,
                metavar="PATH...",
                rich_help_panel=f.panel,
            )
        elif f.kind == "bool":
            # a switch that is off by default needs no --no-... form
            off = f"{f.flags[0]}/--no-{f.flags[0][2:]}" if default is not False else f.flags[0]
            decls = [off, *f.flags[1:]]
            spec = typer.Option(default, *decls, help=f.help, rich_help_panel=f.panel)
        else:
            spec = typer.Option(
                default,
                *f.flags[1:],  # the short names the README uses first
                f.flags[0],
                help=f.help,
                show_default=default not in (None, ...),
                metavar=_metavar(f),
                rich_help_panel=f.panel,
            )
        params.append(
            inspect.Parameter(f.param, inspect.Parameter.KEYWORD_ONLY, default=spec, annotation=f.annotation)
        )
        for i, (preset, value) in enumerate(f.presets.items()):
            params.append(
                inspect.Parameter(
                    f"{f.param}__preset{i}",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=typer.Option(
                        False, preset, help=f"Shorthand for {f.flags[0]} {value}.", rich_help_panel=f.panel
                    ),
                    annotation=bool,
                )
            )
    return params


def _split(values: list[str]) -> list[str]:
    return [part.strip() for v in values for part in str(v).split(",") if part.strip()]


def _convert(f: CliField, value: Any) -> Any:
    if f.kind == "list" and f.argument:
        return [str(v) for v in value]
    if f.kind == "list":
        return _split(value)
    if f.kind == "tuples":
        return [list(t) for t in value]
    if f.kind == "tuple":
        return dict(zip(f.names, value, strict=True))
    if f.kind == "choice_or_list":
        return value if not any(c in value for c in ",[") and not value.strip().isdigit() else _split([value])
    if f.kind == "json":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise InputError(
                f"{f.flags[0]} {value!r}: give a JSON value, e.g. {json.dumps(f.default)}"
            ) from None
    return value


class _Tuples:
    """Coercion of a repeatable N-value option: a list of N-tuples of strings."""

    def coerce(self, value: Any, param: Any, ctx: Any) -> list[tuple[str, ...]]:
        return [tuple(str(v) for v in item) for item in value or ()]


def command_class(func: Callable[..., None], fields: list[CliField]) -> type[TyperCommand]:
    """A click command class that passes click's parsed values to ``func`` unchanged.

    typer cannot declare a repeatable option of N values (``--contrast COLUMN TEST REF``): it is
    declared as one N-tuple and made repeatable here, once typer has built it. The command calls
    ``func(ctx=..., **values)`` with the parsed values.
    """
    repeated = {f.param for f in fields if f.kind == "tuples"}

    class ModelCommand(TyperCommand):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for param in self.params:
                if param.name in repeated:
                    param.multiple = True
                    param._runtime_param = _Tuples()  # type: ignore[attr-defined]

            def callback(**values: Any) -> None:
                func(ctx=get_current_context(), **values)

            self.callback = callback

    return ModelCommand


def _given(ctx: typer.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def collect(fields: list[CliField], values: dict[str, Any], ctx: typer.Context) -> dict[str, Any]:
    """The raw model values given on the command line (nested as the model nests them)."""
    out: dict[str, Any] = {}
    for f in fields:
        chosen = [v for i, v in enumerate(f.presets.values()) if values.get(f"{f.param}__preset{i}")]
        if _given(ctx, f.param) and values[f.param] is not None:
            chosen.append(_convert(f, values[f.param]))
        if len(chosen) > 1:
            raise InputError(f"{f.flags[0]}: given more than once ({chosen}); give one value")
        if not chosen:
            continue
        node: Any = out
        for key, nxt in zip(f.path[:-1], f.path[1:], strict=False):
            if isinstance(key, int):
                continue
            node = node.setdefault(key, [{}] if isinstance(nxt, int) else {})
            if isinstance(node, list):
                node = node[0]
        node[f.path[-1]] = chosen[0]
    return out
