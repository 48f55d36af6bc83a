"""Checks of an engine DaemonSet (container `lmcache` running `lmcache server`)."""

from __future__ import annotations

import ipaddress

import adapters
import k8s
import loopback
from lmcache_cli import LMCacheServer, check_command, check_no_hidden
from outcome import CheckFailure, Checks, check_expectations

CONTAINER = "lmcache"


def is_engine(obj: dict) -> bool:
    return obj.get("kind") == "DaemonSet" and k8s.container(obj, CONTAINER) is not None


def _configs(server: LMCacheServer, survey: adapters.Survey, args: list[str], env) -> dict:
    """The parse; a rejection that names an L2 adapter type whose module does not import in
    the venv is a harness error (lmcache skipped the module), not a verdict."""
    try:
        return server.configs(args, env)
    except CheckFailure as e:
        adapters.harness_rejection(survey, args, str(e))
        raise


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_reachable(configs: dict, args: list[str]) -> str:
    http, mp = configs["http_config"], configs["mp_config"]
    given = any(a.split("=", 1)[0] == "--http-host" for a in args)
    rendered = "rendered" if given else "not rendered, default"
    if _loopback(http.http_host):
        raise CheckFailure(
            f"HTTP frontend binds {http.http_host} (--http-host {rendered}): the coordinator's "
            "callbacks and Prometheus cannot reach it from outside the pod"
        )
    if _loopback(mp.host):
        raise CheckFailure(f"MP server binds {mp.host} (--host): vLLM pods cannot reach it")
    return (
        f"--http-host {http.http_host} ({rendered}), --http-port {http.http_port}, "
        f"--host {mp.host}, --port {mp.port}"
    )


def _check_hash_seed(configs: dict, env: dict[str, str]) -> str:
    algorithm = configs["mp_config"].hash_algorithm
    seed = env.get("PYTHONHASHSEED")
    if algorithm == "builtin" and seed != "0":
        raise CheckFailure(
            f"--hash-algorithm builtin hashes with Python's hash(); PYTHONHASHSEED is "
            f"{seed!r}, must be '0' as in vLLM"
        )
    return f"hash_algorithm {algorithm}, PYTHONHASHSEED {seed!r}"


def _check_tcp_probes(c: dict, configs: dict) -> str:
    """tcpSocket probes must target a port the server binds (--port or --http-port)."""
    bound = {configs["mp_config"].port, configs["http_config"].http_port}
    seen = []
    for probe in k8s.PROBES:
        tcp = c.get(probe, {}).get("tcpSocket")
        if tcp is None:
            continue
        port = k8s.resolve_port(c, tcp["port"])
        if port not in bound:
            raise CheckFailure(
                f"{probe} tcpSocket port {port}: the server binds only {sorted(bound)}"
            )
        seen.append(f"{probe} :{port}")
    return ", ".join(seen) or "no tcpSocket probes"


def _scrape(server: LMCacheServer, objects: list[dict], ds: dict, c: dict, configs: dict) -> str:
    """Serve the frontend, then GET what the httpGet probes and Prometheus would."""
    ports = loopback.PortMap()
    with server.serve(configs, ports[configs["http_config"].http_port]) as cache_server_call:
        problems, done = k8s.http_probes(c, ports)
        metrics_problems, metrics_done = _metrics(objects, ds, c, configs, ports, cache_server_call)
    if problems or metrics_problems:
        raise CheckFailure("; ".join(problems + metrics_problems))
    return "; ".join(done + [metrics_done])


def _metrics(objects, ds, c, configs, ports: loopback.PortMap, cache_server_call: dict):
    """(problems, detail) of scraping the metrics Service's target on the served frontend."""
    http_port = configs["http_config"].http_port
    endpoint = k8s.metrics_endpoint(objects, ds)
    if endpoint is None:
        return [], f"frontend started on --http-port {http_port}; no metrics Service in the case"
    service_port, path, how = endpoint
    target = k8s.resolve_port(c, service_port.get("targetPort", service_port["port"]))
    problems = []
    if target != http_port:
        exporter = cache_server_call.get("start_prometheus_http_server")
        problems.append(
            f"{how} targets container port {target}, but /metrics is served by the HTTP "
            f"frontend on --http-port {http_port} (run_cache_server is started with "
            f"start_prometheus_http_server={exporter}): nothing listens on {target}"
        )
    scrape = loopback.scrape_problem(ports[target], path, target)
    problems += [scrape] if scrape else []
    return (
        problems,
        f"{how} -> container port {target} = --http-port: GET {path} 200 Prometheus text",
    )


def check(
    checks: Checks,
    server: LMCacheServer,
    survey: adapters.Survey,
    objects: list[dict],
    ds: dict,
    expected: dict,
) -> None:
    subject = k8s.name_of(ds)
    c = k8s.container(ds, CONTAINER)
    args, env = [str(a) for a in c.get("args", [])], k8s.container_env(c)
    command = c.get("command", [])
    checks.run(
        subject,
        "command is the lmcache console script",
        check_command,
        command,
        server.entry_point,
        server.subcommand,
    )
    checks.run(subject, "no hidden/deprecated options", check_no_hidden, server.parser, args)
    if adapters.has_adapters(args):
        checks.run(
            subject,
            "--l2-adapter types: their adapter modules import in the venv",
            adapters.check_types,
            survey,
            args,
        )
    configs = checks.run(
        subject,
        "args parse with the real `lmcache server` and build its configs",
        _configs,
        server,
        survey,
        args,
        env,
        describe=lambda configs: "built " + ", ".join(type(v).__name__ for v in configs.values()),
    )
    if configs is None:
        return
    checks.run(subject, "listeners reachable from outside the pod", _check_reachable, configs, args)
    checks.run(
        subject, "PYTHONHASHSEED for --hash-algorithm builtin", _check_hash_seed, configs, env
    )
    checks.run(subject, "tcpSocket probes target a bound port", _check_tcp_probes, c, configs)
    checks.run(
        subject,
        "httpGet probes and metrics answer on the real HTTP frontend",
        _scrape,
        server,
        objects,
        ds,
        c,
        configs,
    )
    if expected:
        checks.run(subject, "case expectations (engine)", check_expectations, expected, configs)
