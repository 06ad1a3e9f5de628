"""Start and stop real cluster processes for tests: Ray heads, Dask schedulers and workers, moto.

Every server binds to 127.0.0.1 on a free port, runs in its own session (process group), and is
stopped by PID only: the process and the descendants recorded while it ran, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_tmpdir(prefix: str) -> str:
    """A short directory under /tmp (Ray's Unix socket paths must stay under 108 characters)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@dataclass
class Proc:
    """A started server process and the descendants seen under it."""

    popen: subprocess.Popen[bytes]
    log: Path
    seen: dict[int, float] = field(default_factory=dict)

    def record(self) -> None:
        """Remember the current descendants (pid -> start time) so that stop() can reach them."""
        try:
            family = [
                psutil.Process(self.popen.pid),
                *psutil.Process(self.popen.pid).children(recursive=True),
            ]
        except psutil.Error:
            return
        for proc in family:
            try:
                self.seen.setdefault(proc.pid, proc.create_time())
            except psutil.Error:
                continue

    def stop(self) -> None:
        """SIGTERM the process, then SIGKILL it and every recorded descendant still alive."""
        self.record()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for pid, started in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == started:
                    proc.kill()
            except psutil.Error:
                continue

    def tail(self) -> str:
        """The last lines of the process's log (for assertion messages)."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:]) if self.log.exists() else ""


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start ``cmd`` in its own session with stdout and stderr to ``log``."""
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    popen = subprocess.Popen(
        cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )
    return Proc(popen=popen, log=log)


def wait_until(check: Callable[[], bool], proc: Proc, what: str, timeout: float = 120.0) -> None:
    """Poll ``check`` until it is true; fail with the process log when it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            proc.record()
            return
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.popen.returncode}:\n{proc.tail()}")
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:g} s:\n{proc.tail()}")


def gcs_answers(address: str, token: str | None = None) -> bool:
    """True when a Ray GCS answers at ``address`` (with ``token`` when given)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=2, metadata=metadata
            )
        except grpc.RpcError:
            return False
    return True


def tcp_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ray_head(
    tmp: str, *, num_cpus: int, env: dict[str, str] | None = None, token: str | None = None
) -> tuple[Proc, str]:
    """Start ``ray start --head --block`` on 127.0.0.1 (temp dir ``tmp``); return it and its GCS address."""
    port = free_port()
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        full_env.pop(key, None)
    if token:
        full_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    else:
        full_env["RAY_AUTH_MODE"] = "disabled"
        full_env.pop("RAY_AUTH_TOKEN", None)
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block",
        "--port", str(port),
        "--node-ip-address", "127.0.0.1",
        "--temp-dir", tmp,
        "--num-cpus", str(num_cpus),
        "--include-dashboard", "false",
        "--disable-usage-stats",
        "--dashboard-agent-listen-port", str(free_port()),
        "--metrics-export-port", str(free_port()),
    ]  # fmt: skip
    proc = start(cmd, Path(tmp) / "head.log", env=full_env)
    address = f"127.0.0.1:{port}"
    wait_until(lambda: gcs_answers(address, token), proc, "ray head")
    time.sleep(1.0)  # the raylet registers just after the GCS answers
    proc.record()
    return proc, address


_worker_ports = [20000]
# A node's agents import much of Ray; on a loaded 2-core machine that outlasts Ray's start-up waits.
SLOW_START = {"RAY_agent_register_timeout_ms": "180000", "RAY_raylet_start_wait_time_s": "180"}


def ray_worker_node(
    address: str, prefix: str, *, num_cpus: int, token: str | None = None, attempts: int = 3
) -> Proc:
    """Start ``ray start --address ... --block`` as one more node on 127.0.0.1 (own temp dir and ports).

    Returns once ``ray start`` reports the node started. A raylet waits only about 15 s for
    its dashboard agent, which a loaded machine can outlast; such a failed start (the process
    exits) is stopped and tried again, with a fresh temp dir, up to ``attempts`` times.
    """
    for attempt in range(attempts):
        tmp = short_tmpdir(prefix)
        try:
            return _ray_worker_node(address, tmp, num_cpus=num_cpus, token=token)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _ray_worker_node(address: str, tmp: str, *, num_cpus: int, token: str | None) -> Proc:
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **SLOW_START}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        full_env.pop(key, None)
    if token:
        full_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    else:
        full_env["RAY_AUTH_MODE"] = "disabled"
    cmd = [
        str(BIN / "ray"), "start", "--address", address, "--block",
        "--node-ip-address", "127.0.0.1",
        "--temp-dir", tmp,
        "--num-cpus", str(num_cpus),
        "--object-store-memory", str(150 * 2**20),
        "--node-manager-port", str(free_port()),
        "--object-manager-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()),
        "--dashboard-agent-grpc-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--metrics-export-port", str(free_port()),
        "--min-worker-port", str(_worker_ports[0]), "--max-worker-port", str(_worker_ports[0] + 199),
        "--disable-usage-stats",
    ]  # fmt: skip
    _worker_ports[0] += 200  # each node its own range (the head keeps Ray's default 10002-19999)
    proc = start(cmd, Path(tmp) / "node.log", env=full_env)
    try:
        wait_until(
            lambda: "Ray runtime started" in proc.log.read_text(errors="replace"),
            proc,
            "ray worker node",
            timeout=180,
        )
    except RuntimeError:
        proc.stop()
        raise
    proc.record()
    return proc


def raylet_of(node: Proc) -> psutil.Process:
    """The raylet process of a node started by :func:`ray_head` or :func:`ray_worker_node`."""
    for child in psutil.Process(node.popen.pid).children(recursive=True):
        if child.name() == "raylet":
            return child
    raise RuntimeError(f"no raylet under pid {node.popen.pid}:\n{node.tail()}")


def running_on(raylet: psutil.Process, title: str) -> bool:
    """True when a worker of ``raylet``'s node runs a task or method whose process title has ``title``."""
    try:
        workers = raylet.children(recursive=True)
    except psutil.Error:
        return False
    for proc in workers:
        try:
            if title in " ".join(proc.cmdline()):
                return True
        except psutil.Error:
            continue
    return False
