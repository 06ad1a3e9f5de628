"""The params machinery: every stage declares its parameters once, in one pydantic model.

A field's name, type, default, bounds and help live in that model (a subclass of
:class:`StageParams`). The run config (``[stage.params]``) validates against it, and the CLI
command of the stage is generated from it (:mod:`gexplain.pipelines.cli.generate`): the flag of field
``n_samples`` is ``--n-samples``, with the same default and the same checks. Friendly CLI aliases
(``--samples``) are declared next to the field with :func:`cli`.

One validator per concept lives here or is called from here: user-given names
(:func:`gexplain.storage.names.validate_name`, applied to every :data:`Name` field and to every field
called ``name``, ``model_set`` or ``evaluation``), store locations (:func:`check_store_url`), and
:func:`format_errors`, the one wording of a bad value that the config and the CLI both print.
Cluster addresses: :func:`gexplain.pipelines.config.route_cluster_address`; label columns and unlabelled
samples: :mod:`gexplain.pipelines.labels`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fsspec.registry import known_implementations
from gexplain.storage.errors import InputError
from gexplain.storage.names import validate_name
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

NAME_FIELDS = ("name", "model_set", "evaluation")


def field_check(check: Callable[[str, str], str]) -> Callable[[str], str]:
    """A pydantic field validator from a ``check(value, what)`` that raises :class:`InputError`."""

    def validate(value: str) -> str:
        try:
            return check(value, "")
        except InputError as exc:
            raise ValueError(str(exc).strip()) from None

    return validate


_name = field_check(validate_name)
Name = Annotated[str, AfterValidator(_name)]
"""A user-given name (result, model set, evaluation, run, stage): :data:`gexplain.storage.names.NAME_RULE`."""


def check_store_url(url: str, what: str = "store") -> str:
    """The one check of a store location: a local path, or a URL whose scheme fsspec knows.

    Parameters
    ----------
    url
        Path or URL (``memory://``, ``s3://``, ``gs://``, ...).
    what
        Where it came from, for the message (``--out``, ``run.store``).

    Raises
    ------
    InputError
        For an empty location, an unknown scheme or a URL without a path.
    """
    text = str(url).strip()
    if not text:
        raise InputError(f"{what}: empty; give a path or a URL such as s3://bucket/cohort.zarr")
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme not in known_implementations:
            raise InputError(
                f"{what} {url!r}: unknown URL scheme '{scheme}://'; use a path or an fsspec URL "
                "(memory://, s3://, gs://, ...)"
            )
        if not rest.strip("/"):
            raise InputError(
                f"{what} {url!r}: no path after '{scheme}://'; e.g. {scheme}://bucket/cohort.zarr"
            )
    return text


StoreUrl = Annotated[str, AfterValidator(field_check(check_store_url))]
"""A store location (:func:`check_store_url`)."""


def cli(*aliases: str, argument: bool = False, presets: dict[str, Any] | None = None) -> dict[str, Any]:
    """CLI metadata for a field, passed as ``Field(..., json_schema_extra=cli(...))``.

    Parameters
    ----------
    aliases
        Extra flags users already rely on (``"--samples"`` for ``n_samples``); the flag
        ``--<field-name>`` always exists.
    argument
        The field is a positional argument of the command (e.g. ingest's input files).
    presets
        Shorthand flags that set the field to a value (``{"--tpm": "tpm"}``).
    """
    meta: dict[str, Any] = {"cli_aliases": list(aliases)}
    if argument:
        meta["cli_argument"] = True
    if presets:
        meta["cli_presets"] = dict(presets)
    return meta


class StageParams(BaseModel):
    """Base class of every stage's parameters: unknown keys are errors; names follow the name rule.

    Fields called ``name``, ``model_set`` or ``evaluation`` (in any stage, whether or not typed :data:`Name`) must
    be valid names when set; an empty string means "the default" and is allowed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _names_are_safe(self) -> StageParams:
        for field in NAME_FIELDS:
            value = getattr(self, field, None) if field in type(self).model_fields else None
            if isinstance(value, str) and value:
                try:
                    _name(value)
                except ValueError as exc:
                    raise ValueError(f"{field} ({flag(field)} {value!r}): {exc}") from None
        return self


def flag(field: str) -> str:
    """The CLI flag of a field (or of a dotted path into a nested model): ``n_samples`` -> ``--n-samples``."""
    return "--" + field.replace(".", "-").replace("_", "-")


def _loc(loc: tuple[Any, ...]) -> str:
    # list indexes and union members ("literal['all']", "list[int]") are not keys
    parts = [str(p) for p in loc if not isinstance(p, int) and "[" not in str(p)]
    if parts and parts[0] == "tests":  # DE: the CLI sets one test; keep the key short
        parts = parts[1:]
    return ".".join(parts)


def format_error(err: Any) -> str:
    """One problem of a :class:`pydantic.ValidationError`, naming the config key and the CLI flag.

    The config and the CLI print the same line, e.g.
    ``n_samples (--n-samples 0): Input should be greater than or equal to 1``.
    """
    key = _loc(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    if err["type"] == "missing":
        return f"{key} ({flag(key)}): required"
    if not key:
        return msg
    return f"{key} ({flag(key)} {err.get('input')!r}): {msg}"


def format_errors(exc: ValidationError) -> list[str]:
    """Every problem of ``exc``, one line each (:func:`format_error`)."""
    return [format_error(err) for err in exc.errors()]


def validate_params(model: type[StageParams], values: dict[str, Any], what: str) -> StageParams:
    """Validate ``values`` against ``model``; raise :class:`InputError` with :func:`format_errors`.

    Parameters
    ----------
    model
        The stage's params model.
    values
        Raw values (from a config table or from CLI flags).
    what
        Prefix of the message, e.g. ``"gexplain simulate cohort"``.
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InputError(f"{what}: bad options:\n  - " + "\n  - ".join(format_errors(exc))) from None
