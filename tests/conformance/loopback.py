"""Loopback-only networking for the checks: free ports, a port remapping, HTTP GETs."""

from __future__ import annotations

import http.client
import socket
import time

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class PortMap:
    """Rendered port number -> its own free loopback port (allocated on first use).

    Every rendered port is remapped, including ones nothing binds: a GET there then fails
    exactly as it would in the cluster.
    """

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}

    def __getitem__(self, rendered: int) -> int:
        if rendered not in self.ports:
            self.ports[rendered] = free_port()
        return self.ports[rendered]


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path; raises OSError."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, response.getheader("Content-Type", ""), body
    finally:
        conn.close()


def describe_get(port: int, path: str) -> str | None:
    """None when GET answers 200, else why not (status and body start, or the socket error)."""
    try:
        status, _, body = get(port, path)
    except OSError as e:
        return f"GET {path}: {e.__class__.__name__}: {e}"
    return None if status == 200 else f"GET {path}: HTTP {status} {body[:200]!r}"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def is_prometheus_text(content_type: str, body: str) -> bool:
    """Prometheus text exposition: text/plain (or OpenMetrics) with # HELP/# TYPE lines."""
    text_type = content_type.startswith("text/plain") or "openmetrics" in content_type
    return text_type and ("# TYPE " in body or "# HELP " in body)


def scrape_problem(port: int, path: str, rendered_port: int) -> str | None:
    """None when GET path on port answers 200 with Prometheus text, else why not."""
    where = f"GET {path} on container port {rendered_port}"
    try:
        status, content_type, body = get(port, path)
    except OSError as e:
        return f"{where}: {e.__class__.__name__}: {e}"
    if status != 200:
        return f"{where}: HTTP {status} {body[:200]!r}"
    if not is_prometheus_text(content_type, body):
        return f"{where}: not Prometheus text ({content_type})"
    return None
