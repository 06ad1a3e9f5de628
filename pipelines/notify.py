"""Run notifications: a JSON summary POSTed to a webhook when a run succeeds or fails.

Like nf-core's ``hook_url``: set ``[notify] hook_url`` in the run config (or ``gexplain run
--hook-url``) and every ``gexplain run`` ends with one POST of :func:`summary` as JSON
(``Content-Type: application/json``). A webhook that fails or times out is logged as a warning and
never changes the run's own outcome or exit code.

Example::

    [notify]
    hook_url = "https://hooks.example.org/services/T000/B000/XXXX"
    on = ["failure", "success"]
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger(__name__)


class NotifySection(BaseModel):
    """The ``[notify]`` table."""

    model_config = ConfigDict(extra="forbid")

    hook_url: str = Field(
        "", description="Webhook URL (http or https) that receives the run summary as JSON."
    )
    on: list[Literal["success", "failure"]] = Field(
        default_factory=lambda: ["success", "failure"], description="Outcomes that send a notification."
    )
    timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for the webhook to answer.")

    @field_validator("hook_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (or '' for no notification)")
        if value and "@" in urlsplit(value).netloc:
            # RFC 9110 section 4.2.4: http(s) URLs carry no user:password@; urllib would not send
            # it either, and it would end up wherever the URL is shown.
            raise ValueError(
                "must not hold user:password@ (http and https URLs carry no credentials there); "
                "put the webhook's secret in its path or query, as the service's webhook URL does"
            )
        return value


def public_address(url: str) -> str:
    """Return ``scheme://host[:port]`` of ``url``: what logs may show of a webhook.

    Webhook paths and queries hold the service's secret, and a ``user:password@`` part (refused
    by :class:`NotifySection`, but possible in a hand-built section) holds credentials.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def summary(manifest: dict[str, Any], status: str, error: BaseException | None = None) -> dict[str, Any]:
    """Return the JSON-serialisable summary of a run manifest.

    Parameters
    ----------
    manifest
        The run manifest as the runner wrote it.
    status
        ``"success"``, ``"failure"`` or ``"interrupted"``.
    error
        The exception that ended a failed run.
    """
    config = manifest.get("config") or {}
    stages = [
        {key: stage.get(key) for key in ("name", "kind", "status", "wall_s", "peak_rss_mb")}
        for stage in manifest.get("stages", [])
    ]
    return {
        "event": "gexplain.run",
        "status": status,
        "run": (config.get("run") or {}).get("name"),
        "config_path": manifest.get("config_path"),
        "store": manifest.get("store"),
        "runtime": manifest.get("runtime"),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "stages": stages,
        "error": f"{type(error).__name__}: {error}" if error is not None else None,
        "versions": manifest.get("versions"),
    }


def send(section: NotifySection | None, manifest: dict[str, Any], error: BaseException | None = None) -> bool:
    """POST the run summary to ``section.hook_url`` when its outcome is one it asks for.

    Parameters
    ----------
    section
        The ``[notify]`` settings (``None`` or an empty ``hook_url``: nothing is sent).
    manifest
        The run manifest.
    error
        ``None`` for a successful run; the exception otherwise (``KeyboardInterrupt`` is reported
        as ``"interrupted"``).

    Returns
    -------
    bool
        True when the webhook answered with a 2xx status.
    """
    if section is None or not section.hook_url:
        return False
    outcome = "success" if error is None else "failure"
    if outcome not in section.on:
        return False
    status = outcome if not isinstance(error, KeyboardInterrupt) else "interrupted"
    body = json.dumps(summary(manifest, status, error), default=str).encode()
    request = urllib.request.Request(
        section.hook_url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "gexplain"},
    )
    where = public_address(section.hook_url)
    try:
        with urllib.request.urlopen(request, timeout=section.timeout_s) as response:
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("notification to %s failed: %s", where, str(exc).replace(section.hook_url, where))
        return False
    if not ok:
        log.warning("notification to %s answered %s", where, response.status)
    return ok
