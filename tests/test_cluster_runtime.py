"""Runtime addresses, fail-fast connection, and the embedded Ray's network exposure (issue 10 items 1-3)."""

from __future__ import annotations

import os
import socket

import grpc
import psutil
import pytest
import ray
from cluster_procs import free_port
from gexplain.cluster.runtime import ClusterConnectError, probe_ray_gcs, ray_address_kind, start_runtime
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("", "embedded"),
        ("local", "embedded"),
        ("auto", "auto"),
        ("127.0.0.1:6380", "gcs"),
        ("head-node.svc.cluster.local:6379", "gcs"),
        ("[::1]:6379", "gcs"),
        ("ray://head:10001", "client"),
    ],
)
def test_ray_address_forms_are_accepted(address, kind):
    assert ray_address_kind(address) == kind


@pytest.mark.parametrize(
    "address", ["head", "tcp://sched:8786", "http://head:8265", "head:port", "head:99999"]
)
def test_other_addresses_are_refused_naming_the_forms(address):
    with pytest.raises(ValueError, match="host:port"):
        ray_address_kind(address)


def test_unreachable_ray_address_fails_at_start_naming_it():
    port = free_port()  # nothing listens there
    with pytest.raises(
        ClusterConnectError, match=rf"Ray at 127\.0\.0\.1:{port}: nothing accepts connections"
    ):
        start_runtime(f"127.0.0.1:{port}")


def test_non_ray_server_is_named_as_such():
    with socket.socket() as server:  # a TCP server that is not a Ray GCS
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(ClusterConnectError, match="did not answer as a Ray GCS"):
            probe_ray_gcs(address, timeout=2)


def test_unreachable_dask_scheduler_fails_at_start_naming_it(monkeypatch):
    monkeypatch.setattr("gexplain.cluster.runtime.CONNECT_TIMEOUT_S", 2.0)
    port = free_port()
    with pytest.raises(ClusterConnectError, match=rf"Dask scheduler at tcp://127\.0\.0\.1:{port}"):
        start_runtime(dask_address=f"tcp://127.0.0.1:{port}")


def _ray_listeners() -> list[tuple[int, str, str, int]]:
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((proc.pid, proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    return out


def _get_cluster_id(address: str, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=5, metadata=metadata
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_embedded_ray_is_not_open_to_other_processes(ray_runtime):
    """During a real embedded run, nothing listens off loopback, and the GCS still wants the token.

    The embedded Ray's node address is loopback, so Ray binds its GCS, raylet, workers and agents
    there; token authentication stays on for the other users of the machine: a client without the
    run's token is refused by the GCS, and a client with it is accepted.
    """

    @ray.remote
    def where() -> str:
        return os.environ.get("RAY_AUTH_MODE", "")

    assert ray.get(where.remote()) == "token"  # a live task: the workers are up
    listeners = _ray_listeners()
    assert listeners, "the embedded Ray's processes should be children of this process"
    exposed = [entry for entry in listeners if entry[2] not in LOOPBACK]
    assert exposed == []
    gcs = ray.get_runtime_context().gcs_address
    assert os.environ.get("RAY_AUTH_MODE") == "token"
    token = os.environ["RAY_AUTH_TOKEN"]
    assert len(token) >= 32
    assert _get_cluster_id(gcs, None) == grpc.StatusCode.UNAUTHENTICATED
    assert _get_cluster_id(gcs, "not-the-token") == grpc.StatusCode.UNAUTHENTICATED
    assert _get_cluster_id(gcs, token) == grpc.StatusCode.OK


def test_an_address_naming_the_ray_this_process_holds_reuses_it(ray_runtime):
    gcs = ray.get_runtime_context().gcs_address
    runtime = start_runtime(gcs)  # probes the GCS with this process's token, then reuses the connection
    assert runtime.ray_connected_here and not runtime.ray_started_here
    runtime.shutdown()
    assert ray.is_initialized()  # what it did not start stays up
