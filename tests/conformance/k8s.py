"""Reading the rendered Kubernetes objects: pod templates, ports, Services, ServiceMonitors.

Only what the checks need; every function takes plain JSON (dicts and lists).
"""

from __future__ import annotations

import loopback
from outcome import CheckFailure

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def name_of(obj: dict) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace', '')}/{meta.get('name', '')}"


def pod_template(obj: dict) -> dict | None:
    """The pod (metadata + spec) that obj runs, or None for objects without pods."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj
    if kind in WORKLOAD_KINDS:
        return obj.get("spec", {}).get("template")
    if kind == "CronJob":
        return obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template")
    return None


def containers(pod: dict) -> list[dict]:
    return pod.get("spec", {}).get("containers", [])


def container(obj: dict, name: str) -> dict | None:
    pod = pod_template(obj)
    return next((c for c in containers(pod or {}) if c.get("name") == name), None)


def env_value(entry: dict) -> str | None:
    """A container env entry's value as the pod would see it (fieldRef status.podIP is
    replaced by 127.0.0.1, the only address anything here may use); None when unresolvable."""
    if "value" in entry:
        return entry["value"]
    field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    return "127.0.0.1" if field in ("status.podIP", "status.hostIP") else None


def container_env(c: dict) -> dict[str, str]:
    """name -> value; as in Kubernetes, a later duplicate wins."""
    env = {}
    for entry in c.get("env", []):
        value = env_value(entry)
        if value is not None:
            env[entry["name"]] = value
    return env


def resolve_port(c: dict, port: int | str) -> int:
    """A probe or Service targetPort (number or container port name) as a port number."""
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    for p in c.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise CheckFailure(f"port name {port!r} is not a port of container {c.get('name')!r}")


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def find(objects: list[dict], kind: str, namespace: str, name: str) -> dict | None:
    for obj in objects:
        meta = obj.get("metadata", {})
        if (obj.get("kind"), meta.get("namespace", ""), meta.get("name")) == (
            kind,
            namespace,
            name,
        ):
            return obj
    return None


def metrics_endpoint(objects: list[dict], workload: dict) -> tuple[dict, str, str] | None:
    """(Service port, path, how it was found) that Prometheus scrapes for workload, or None
    when the case has no metrics Service.

    The Service is `<name>-metrics` in the workload's namespace; its selector must select the
    pod template. A ServiceMonitor whose selector matches the Service and which names one of
    its ports gives the port and path (default /metrics); without one, the Service's first
    port and /metrics are used.
    """
    meta = workload["metadata"]
    namespace = meta.get("namespace", "")
    service = find(objects, "Service", namespace, f"{meta['name']}-metrics")
    if service is None:
        return None
    pod_labels = pod_template(workload).get("metadata", {}).get("labels", {})
    if not labels_match(service["spec"].get("selector", {}), pod_labels):
        raise CheckFailure(f"{name_of(service)} does not select the pods of {name_of(workload)}")
    ports = {p.get("name"): p for p in service["spec"].get("ports", [])}
    service_labels = service.get("metadata", {}).get("labels", {})
    for monitor in objects:
        if monitor.get("kind") != "ServiceMonitor":
            continue
        if monitor.get("metadata", {}).get("namespace", "") != namespace:
            continue
        if not labels_match(
            monitor["spec"].get("selector", {}).get("matchLabels", {}), service_labels
        ):
            continue
        for endpoint in monitor["spec"].get("endpoints", []):
            if endpoint.get("port") not in ports:
                raise CheckFailure(
                    f"{name_of(monitor)} scrapes port {endpoint.get('port')!r}, "
                    f"which {name_of(service)} does not have"
                )
            path = endpoint.get("path", "/metrics")
            return ports[endpoint["port"]], path, f"{name_of(monitor)} port {endpoint['port']!r}"
    first = service["spec"]["ports"][0]
    return first, "/metrics", f"{name_of(service)} port {first.get('name')!r} (no ServiceMonitor)"


def http_probes(c: dict, ports: loopback.PortMap) -> tuple[list[str], list[str]]:
    """(problems, passed) of the container's httpGet probes, each GET on its mapped port."""
    problems, passed = [], []
    for probe in PROBES:
        get = c.get(probe, {}).get("httpGet")
        if get is None:
            continue
        port, path = resolve_port(c, get["port"]), get.get("path", "/")
        error = loopback.describe_get(ports[port], path)
        if error:
            problems.append(f"{probe} {error} on container port {port}")
        else:
            passed.append(f"{probe} GET {path} :{port}")
    return problems, passed
