"""Issue 20: nothing of the embedded Ray answers off loopback; what Ray offers no setting for.

The reference is the operating system's socket table (psutil) and an HTTP client sent without the
run's token: every listener of the embedded Ray's processes must be bound to a loopback address,
including the Prometheus metrics servers of the dashboard head, the autoscaler and the dashboard
agent, which Ray binds to all interfaces when the node address is not loopback.
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request

import psutil
import ray


def _listeners() -> list[tuple[str, str, int, str]]:
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((proc.name(), conn.laddr.ip, conn.laddr.port, cmd))
        except psutil.Error:
            continue
    return out


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _http_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except Exception:  # a gRPC port: not HTTP
        return None


def test_every_listener_of_the_embedded_ray_is_on_loopback(ray_runtime) -> None:
    @ray.remote
    def one() -> int:
        return 1

    assert ray.get(one.remote()) == 1  # workers and agents are up
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    listeners = _listeners()
    assert len(listeners) >= 4, listeners  # GCS, raylet, agents, workers
    exposed = [entry[:3] for entry in listeners if not _loopback(entry[1])]
    assert exposed == [], f"listening off loopback: {exposed}"
    # the metrics endpoints answer (on loopback only) -- proof that they were among the listeners
    metrics = [entry for entry in listeners if _http_status(entry[2]) == 200]
    assert metrics, "expected Ray's Prometheus endpoints on loopback"


def test_the_dashboard_head_ray_always_starts_serves_no_frontend(ray_runtime) -> None:
    heads = [entry for entry in _listeners() if "dashboard/dashboard.py" in entry[3]]
    for _name, ip, _port, cmd in heads:  # Ray has no setting to skip this process
        assert "--disable-frontend" in cmd and "--modules-to-load=UsageStatsHead" in cmd
        assert _loopback(ip)
