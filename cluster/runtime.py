"""Ray and Dask runtimes: the embedded local default, or existing clusters by address.

Local default
-------------
With no address, gexplain embeds its own runtime for the length of a run:

* Dask: the local threaded scheduler with one worker per core (no extra processes).
* Ray: started lazily, on first use by a stage that needs it, as a *private* instance
  (``ray.init(address="local")``): it never attaches to another Ray on the machine, to a stale
  ``/tmp/ray/ray_current_cluster`` or to ``RAY_ADDRESS``. It has ``num_cpus`` = the machine's cores
  and no dashboard UI. Its node address is the loopback address (:data:`LOOPBACK_ENV`: what Ray
  does on macOS and Windows), so every HTTP listener Ray derives from it -- the metrics servers of
  the dashboard head, the autoscaler and the dashboard agent, the dashboard head's own API -- binds
  127.0.0.1 only. Ray offers no setting to skip its dashboard head process: with
  ``include_dashboard=False`` it still starts, with the ``UsageStatsHead`` module only and no
  frontend (usage stats are off). The GCS, raylet, agents and workers' gRPC servers bind the
  node address too. Other users of the machine can still reach loopback, so the embedded Ray
  always runs with token authentication and a
  fresh random token made for this run and kept in this process's environment only: nothing is
  written to ``~/.ray``, and no other process, local or remote, can submit work to it.
  ``tests/test_cluster_runtime.py`` lists what listens where during a run. A watchdog
  (:mod:`gexplain.cluster.reaper`) kills Ray's processes as soon as the driver dies, even by SIGKILL.

Existing clusters
-----------------
``address="auto"`` joins the Ray cluster this machine belongs to, ``"host:port"`` (Ray's own
form, the GCS address) joins that cluster, ``"ray://host:10001"`` connects a Ray client, and
``dask_address="tcp://host:8786"`` uses a Dask distributed scheduler, and ``dask_address="ray"`` runs
Dask's graphs as Ray tasks on the run's Ray (``ray.util.dask``: Dask-on-Ray), so that on a Ray-only
cluster (KubeRay) normalize and DE scale with the Ray workers instead of running on the
driver's threads. :func:`start_runtime`
connects to every configured cluster at once and fails within seconds with
:class:`ClusterConnectError`, naming the address and the likely fix, so that no stage runs
before the clusters are known to be reachable. gexplain never shuts down what it did not start.
For a cluster with token authentication, export ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``
(or ``RAY_AUTH_TOKEN_PATH``) as the cluster's docs say.

Worker environment
------------------
``worker_env`` (environment variables) reaches every Ray worker through the job's
``runtime_env`` and every Dask worker through a worker plugin, which also runs ``worker_setup``
(a picklable callable, e.g. one that re-reads storage options from the environment). Ray's
job-scoped workers end with the job; Dask workers of a shared cluster do not, so
:meth:`Runtime.shutdown` unregisters the plugin, which restores each worker's environment and
fsspec state (forwarded credentials removed). A driver killed by SIGKILL cannot do that: restart
the workers, or give each run its own Dask cluster (as the KubeRay deployment does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dask
from distributed.diagnostics.plugin import WorkerPlugin

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
# Ray's switch for single-machine mode (macOS, Windows): the node address becomes 127.0.0.1
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")
DASK_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")
DASK_ON_RAY = "ray"
AUTH_FIX = (
    "if the cluster uses token authentication, export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> "
    "(or RAY_AUTH_TOKEN_PATH=<file>) with the cluster's token before running gexplain"
)


_DEFAULT_WORKER_ENV: dict[str, str] = {}
_DEFAULT_WORKER_SETUP: list[Callable[[], None]] = []


def set_default_worker_env(env: dict[str, str], setup: Callable[[], None] | None = None) -> None:
    """Set the worker environment every later :func:`start_runtime` gets (process-wide).

    Parameters
    ----------
    env
        Environment variables for every Ray and Dask worker (replaces earlier defaults).
    setup
        Picklable callable each Dask worker runs after applying ``env``.
    """
    _DEFAULT_WORKER_ENV.clear()
    _DEFAULT_WORKER_ENV.update(env)
    _DEFAULT_WORKER_SETUP[:] = [setup] if setup is not None else []


class ClusterConnectError(ConnectionError):
    """A configured cluster cannot be reached or refuses this client; the message names the fix."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def ray_address_kind(address: str) -> str:
    """Classify a Ray address, or raise ``ValueError`` naming the accepted forms.

    Parameters
    ----------
    address
        ``""`` or ``"local"`` (embedded), ``"auto"``, ``"host:port"`` (a GCS address, e.g.
        ``127.0.0.1:6380``) or ``"ray://host:port"`` (Ray client).

    Returns
    -------
    str
        One of ``"embedded"``, ``"auto"``, ``"gcs"``, ``"client"``.
    """
    if address in ("", "local"):
        return "embedded"
    if address == "auto":
        return "auto"
    if address.startswith("ray://") and _HOST_PORT.match(address[len("ray://") :]):
        return "client"
    match = _HOST_PORT.match(address)
    if match and 0 < int(match["port"]) < 65536:
        return "gcs"
    raise ValueError(
        f"{address!r} is not a Ray address: use '' or 'local' (embedded), 'auto' (the cluster this machine "
        "belongs to), 'host:port' (the head's GCS address, e.g. 127.0.0.1:6379) or 'ray://host:10001' "
        "(Ray client); a Dask scheduler address (tcp://...) goes in dask_address / --dask"
    )


def _split_host_port(address: str) -> tuple[str, int]:
    match = _HOST_PORT.match(address)
    if match is None:  # pragma: no cover - guarded by ray_address_kind
        raise ValueError(address)
    return match["host"].strip("[]"), int(match["port"])


def _tcp_reachable(host: str, port: int, timeout: float) -> str | None:
    """Return None when a TCP connection to host:port succeeds, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


def _client_token() -> str | None:
    """The token Ray would send to a cluster from this environment (None when auth is off)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    with contextlib.suppress(OSError):
        with open(path) as fh:
            return fh.read().strip() or None
    return None


def probe_ray_gcs(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Check that the Ray GCS at ``address`` answers and accepts this client's credentials.

    One unary gRPC call (``GetClusterId``) with the token Ray itself would send; it answers in
    milliseconds, where ``ray.init`` would retry for tens of seconds before a bare ConnectionError.

    Parameters
    ----------
    address
        ``host:port`` of the GCS.
    timeout
        Seconds to wait for the answer.

    Raises
    ------
    ClusterConnectError
        When nothing listens there, the answer does not come in time, or the token is missing or
        wrong; the message names the address and the fix.
    """
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    host, port = _split_host_port(address)
    reason = _tcp_reachable(host, port, timeout)
    if reason is not None:
        raise ClusterConnectError(
            f"Ray at {address}: nothing accepts connections there ({reason}); check the address "
            f"(`ray status` on the head prints it) and that `ray start --head` runs there"
        )
    token = _client_token()
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                what = "rejected this client's token" if token else "requires a token and none was given"
                raise ClusterConnectError(f"Ray at {address} {what}: {AUTH_FIX}") from exc
            raise ClusterConnectError(
                f"Ray at {address} did not answer as a Ray GCS ({code}: {exc.details() if hasattr(exc, 'details') else exc}); "
                "check that the address is the head's GCS port (default 6379), not the dashboard or client port"
            ) from exc


class _WorkerEnvPlugin(WorkerPlugin):
    """Dask worker plugin: set environment variables, then run an optional setup callable.

    A shared Dask cluster outlives the run, so the plugin undoes itself when the run's client
    unregisters it (:meth:`Runtime.shutdown`): the worker gets back the variables it had before
    (forwarded credentials removed), fsspec's configuration as it was, and no cached filesystem
    instance that holds the run's credentials.
    """

    name = "gexplain-worker-env"

    def __init__(self, env: dict[str, str], setup: Callable[[], None] | None) -> None:
        self.env = dict(env)
        self.setup_fn = setup
        self._before: dict[str, str | None] = {}
        self._fsspec_conf: dict[str, Any] | None = None

    def setup(self, worker: Any) -> None:
        """Apply the environment on the worker (``WorkerPlugin`` protocol)."""
        import copy

        import fsspec.config

        self._before = {key: os.environ.get(key) for key in self.env}
        self._fsspec_conf = copy.deepcopy(fsspec.config.conf)
        os.environ.update(self.env)
        if self.setup_fn is not None:
            self.setup_fn()

    def teardown(self, worker: Any) -> None:
        """Restore the worker's environment and fsspec state (``WorkerPlugin`` protocol)."""
        import fsspec
        import fsspec.config

        for key, value in self._before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._fsspec_conf is not None:
            fsspec.config.conf.clear()
            fsspec.config.conf.update(self._fsspec_conf)
        for cls in list(fsspec.registry.values()):  # instances built with the run's credentials
            with contextlib.suppress(Exception):
                cls.clear_instance_cache()


@contextlib.contextmanager
def _single_machine_ray() -> Iterator[None]:
    """Make this driver's ``ray.init`` keep the loopback node address it is given.

    Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's address unless its constant
    ``ENABLE_RAY_CLUSTER`` (read from :data:`LOOPBACK_ENV` when Ray is imported, possibly before
    this runtime set it) is false; it is set for the duration of the call and restored after.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@dataclass
class Runtime:
    """Handles on the Ray and Dask runtimes of one run.

    Attributes
    ----------
    address
        Ray address (``None`` = embedded local, ``"auto"``, ``"host:port"``, ``"ray://host:port"``).
    dask_address
        Dask scheduler address (``None`` = local threaded scheduler, ``"ray"`` = Dask-on-Ray).
    num_cpus
        CPUs for the embedded Ray and the local Dask scheduler.
    num_gpus
        GPUs for the embedded Ray (``None`` = autodetect).
    object_store_memory
        Bytes for the embedded Ray object store (``None`` = Ray's default).
    worker_env
        Environment variables every Ray and Dask worker gets.
    worker_setup
        Picklable callable run on every Dask worker after ``worker_env`` is applied.
    """

    address: str | None = None
    dask_address: str | None = None
    num_cpus: int = field(default_factory=_cpu_count)
    num_gpus: int | None = None
    object_store_memory: int | None = None
    worker_env: dict[str, str] = field(default_factory=dict)
    worker_setup: Callable[[], None] | None = None
    ray_started_here: bool = False
    ray_connected_here: bool = False
    dask_client: Any | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict, repr=False)
    _reaper: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def _runtime_env(self) -> dict[str, Any] | None:
        return {"env_vars": dict(self.worker_env)} if self.worker_env else None

    def ensure_ray(self) -> None:
        """Start or connect Ray if it is not running in this process yet (idempotent)."""
        import ray

        if ray.is_initialized() and (not self.address or self.ray_connected_here):
            return
        kwargs: dict[str, Any] = {
            "ignore_reinit_error": True,
            "log_to_driver": True,
            "logging_level": logging.WARNING,
            "runtime_env": self._runtime_env(),
        }
        if self.address:
            self._connect_ray(kwargs)
            return
        self._start_embedded_ray(kwargs)

    def _connect_ray(self, kwargs: dict[str, Any]) -> None:
        import ray

        kind = ray_address_kind(self.address or "")
        target = self.address or ""
        if kind == "auto":
            from ray._private.services import canonicalize_bootstrap_address

            try:
                resolved = canonicalize_bootstrap_address("auto")
            except ConnectionError as exc:
                raise ClusterConnectError(
                    f"Ray address 'auto': no running Ray cluster found on this machine ({exc}); start one with "
                    "`ray start --head`, or give its address (host:port or ray://host:10001)"
                ) from exc
            if resolved is None:  # pragma: no cover - Ray returns None only for 'local'
                raise ClusterConnectError("Ray address 'auto' resolved to nothing; give host:port instead")
            target = resolved
            probe_ray_gcs(resolved)
        elif kind == "gcs":
            probe_ray_gcs(target)
        elif kind == "client":
            host, port = _split_host_port(target[len("ray://") :])
            reason = _tcp_reachable(host, port, CONNECT_TIMEOUT_S)
            if reason is not None:
                raise ClusterConnectError(
                    f"Ray client at {target}: nothing accepts connections there ({reason}); the head must run "
                    "`ray start --head --ray-client-server-port 10001`; " + AUTH_FIX
                )
        if ray.is_initialized():  # this process already holds a Ray: use it only if it is that cluster
            current = ray.get_runtime_context().gcs_address
            if kind == "client" or _same_gcs(current, target):
                self.ray_connected_here = True
                return
            raise ClusterConnectError(
                f"Ray at {self.address}: this process is already attached to another Ray (GCS {current}); "
                "run gexplain in a fresh process, or drop the address to use the Ray it has"
            )
        log.info("connecting to Ray at %s", target)
        try:
            ray.init(address=target, **kwargs)
        except (ConnectionError, RuntimeError) as exc:
            raise ClusterConnectError(f"Ray at {self.address}: {exc}; {AUTH_FIX}") from exc
        self.ray_connected_here = True

    def _set_env(self, updates: dict[str, str | None]) -> None:
        for key, value in updates.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _start_embedded_ray(self, kwargs: dict[str, Any]) -> None:
        import psutil
        import ray

        # A fresh token for this run only, in this process's environment (inherited by Ray's
        # processes, never written to disk); RAY_ADDRESS must not leak into Ray's processes.
        self._set_env(
            {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": secrets.token_hex(32),
                "RAY_AUTH_TOKEN_PATH": None,
                "RAY_ADDRESS": None,
                "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0"),
                LOOPBACK_ENV: "0",  # Ray's workers read it at import
            }
        )
        _reload_ray_auth()
        me = psutil.Process()
        before = {p.pid for p in me.children()}
        try:
            with _single_machine_ray():
                ray.init(
                    address="local",  # always a private instance, never a cluster found on this machine
                    num_cpus=self.num_cpus,
                    num_gpus=self.num_gpus,
                    object_store_memory=self.object_store_memory,
                    include_dashboard=False,
                    dashboard_host="127.0.0.1",
                    _node_ip_address="127.0.0.1",
                    **kwargs,
                )
        except BaseException:
            self._restore_env()
            _reload_ray_auth()
            raise
        self.ray_started_here = True
        roots = [p.pid for p in me.children() if p.pid not in before]
        if roots:
            self._reaper = subprocess.Popen(  # its stdin closes when this process exits
                [sys.executable, "-m", "gexplain.cluster.reaper", *map(str, roots)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )

    def connect(self) -> None:
        """Connect to every configured external cluster now (the embedded Ray stays lazy).

        Raises
        ------
        ClusterConnectError
            When a cluster cannot be reached or refuses this client; the message names the
            address and the fix.
        """
        if self.address:
            self.ensure_ray()
        if self.dask_address and self.dask_address != DASK_ON_RAY and self.dask_client is None:
            self.dask_client = _dask_client(self.dask_address, self.worker_env, self.worker_setup)

    @contextlib.contextmanager
    def dask_scheduler(self) -> Iterator[None]:
        """Context in which ``dask.compute`` runs on this runtime's scheduler."""
        if self.dask_address == DASK_ON_RAY:
            from ray.util.dask import ray_dask_get

            self.ensure_ray()
            with dask.config.set(scheduler=ray_dask_get):
                yield
        elif self.dask_client is not None:
            with dask.config.set(scheduler=self.dask_client.get):
                yield
        else:
            with dask.config.set(scheduler="threads", num_workers=self.num_cpus):
                yield

    def describe(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary for run manifests (names of forwarded variables only)."""
        return {
            "ray": self.address or "embedded-local",
            "dask": self.dask_address or "local-threads",
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "worker_env": sorted(self.worker_env),
        }

    def shutdown(self) -> None:
        """Stop only what this runtime started."""
        if self.ray_started_here:
            import ray

            ray.shutdown()
            self.ray_started_here = False
            self._restore_env()
            _reload_ray_auth()
            if self._reaper is not None:
                if self._reaper.stdin is not None:
                    self._reaper.stdin.close()  # the watchdog ends at once
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._reaper.wait(timeout=5)
                if self._reaper.poll() is None:
                    self._reaper.kill()
                    self._reaper.wait()
                self._reaper = None
        if self.dask_client is not None:
            if self.worker_env or self.worker_setup is not None:
                try:  # the workers outlive the run: take its credentials off them
                    self.dask_client.unregister_worker_plugin(_WorkerEnvPlugin.name)
                except Exception as exc:  # a scheduler gone already has no workers to clean
                    log.warning("could not remove the run's environment from the Dask workers: %s", exc)
            self.dask_client.close()
            self.dask_client = None


def _same_gcs(first: str, second: str) -> bool:
    """True when two ``host:port`` GCS addresses name the same server (loopback resolved as Ray does)."""
    from ray._private.services import resolve_ip_for_localhost

    def norm(address: str) -> tuple[str, int]:
        host, port = _split_host_port(address)
        return resolve_ip_for_localhost(host), port

    return norm(first) == norm(second)


def _reload_ray_auth() -> None:
    """Make this process re-read RAY_AUTH_* (Ray caches the mode and the token)."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _dask_client(address: str, env: dict[str, str], setup: Callable[[], None] | None) -> Any:
    from distributed import Client

    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S:g}s")
    except (OSError, TimeoutError) as exc:
        raise ClusterConnectError(
            f"Dask scheduler at {address}: not reachable within {CONNECT_TIMEOUT_S:g} s ({exc}); check the "
            "address (`dask scheduler` prints it) and that the scheduler runs"
        ) from exc
    if env or setup is not None:
        client.register_plugin(_WorkerEnvPlugin(env, setup), name=_WorkerEnvPlugin.name)
    return client


def start_runtime(
    address: str | None = None,
    *,
    dask_address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
    worker_env: dict[str, str] | None = None,
    worker_setup: Callable[[], None] | None = None,
) -> Runtime:
    """Create the runtime of a run and connect to every configured external cluster.

    The embedded Ray starts lazily (:meth:`Runtime.ensure_ray`); external Ray and Dask clusters
    are connected here, so that a wrong address or missing credentials fail before any stage runs.

    Parameters
    ----------
    address
        ``None``, ``""`` or ``"local"`` for the embedded local default, ``"auto"`` to join this
        machine's Ray cluster, ``"host:port"`` for a GCS address, ``"ray://host:port"`` for a Ray client.
    dask_address
        Dask distributed scheduler address, e.g. ``"tcp://scheduler:8786"``; ``"ray"`` runs Dask
        graphs as tasks on this runtime's Ray; ``None`` uses the local threaded scheduler.
    num_cpus, num_gpus
        Resources of the embedded Ray (ignored when connecting). ``num_cpus`` defaults to the cores
        this process may use.
    object_store_memory
        Object-store bytes of the embedded Ray.
    worker_env
        Environment variables for every Ray and Dask worker (storage options, forwarded
        credentials), added to those of :func:`set_default_worker_env`.
    worker_setup
        Picklable callable each Dask worker runs after applying ``worker_env`` (default: the one
        of :func:`set_default_worker_env`).

    Raises
    ------
    ValueError
        When ``address`` is not a Ray address form.
    ClusterConnectError
        When an external cluster cannot be reached or refuses this client.
    """
    if address == "local":
        address = None
    if address:
        ray_address_kind(address)
    runtime = Runtime(
        address=address or None,
        dask_address=dask_address or None,
        num_cpus=num_cpus or _cpu_count(),
        num_gpus=num_gpus,
        object_store_memory=object_store_memory,
        worker_env={**_DEFAULT_WORKER_ENV, **(worker_env or {})},
        worker_setup=worker_setup or (_DEFAULT_WORKER_SETUP[0] if _DEFAULT_WORKER_SETUP else None),
    )
    try:
        runtime.connect()
    except BaseException:
        runtime.shutdown()
        raise
    return runtime
