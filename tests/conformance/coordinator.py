"""Checks of a coordinator Deployment: the real `lmcache coordinator` process, on loopback.

The process is the venv's `lmcache` console script with the rendered args, except that every
`--host` value becomes 127.0.0.1 and each distinct `--port` value its own free loopback port
(the defaults are added when a flag is absent, so nothing binds a rendered address). Probes
and the metrics Service target are mapped through the same table, so a probe on a port the
process does not bind fails as it would in the cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import k8s
import loopback
from lmcache_cli import check_command, check_no_hidden, console_script, subcommand_parser
from outcome import CheckFailure, Checks, check_expectations

CONTAINER = "coordinator"
START_TIMEOUT = 60.0


def is_coordinator(obj: dict) -> bool:
    return obj.get("kind") == "Deployment" and k8s.container(obj, CONTAINER) is not None


def _option_value(args: list[str], option: str) -> list[tuple[int, str]]:
    """(index of the value, value) of every `option V` / `option=V` in args."""
    found = []
    for i, token in enumerate(args):
        if token == option and i + 1 < len(args):
            found.append((i + 1, args[i + 1]))
        elif token.startswith(option + "="):
            found.append((i, token.split("=", 1)[1]))
    return found


def _set_value(args: list[str], index: int, option: str, value: str) -> None:
    args[index] = f"{option}={value}" if args[index].startswith(option + "=") else value


class Coordinator:
    """The released coordinator CLI: its parser (in-process) and how to start its process."""

    def __init__(self, stubs_dir: str) -> None:
        self.entry_point = console_script("lmcache")
        command_cls = importlib.import_module("lmcache.cli.commands.coordinator").CoordinatorCommand
        self.subcommand = command_cls().name()
        self.parser = subcommand_parser(command_cls)
        config_cls = importlib.import_module("lmcache.v1.mp_coordinator.config").MPCoordinatorConfig
        defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
        self.default_port = int(defaults["port"])
        self.script = os.path.join(os.path.dirname(sys.executable), "lmcache")
        self.env = dict(os.environ, PYTHONPATH=stubs_dir)

    def parse(self, args: list[str]):
        """The real parser's Namespace for args (the process reports its own errors)."""
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                return self.parser.parse_args(args)
        except SystemExit:
            raise CheckFailure(stderr.getvalue().strip().splitlines()[-1]) from None

    def loopback_args(self, args: list[str], ports: loopback.PortMap) -> tuple[list[str], int]:
        """args with hosts/ports moved to loopback, and the rendered port it will bind."""
        local = list(args)
        hosts, rendered_ports = _option_value(local, "--host"), _option_value(local, "--port")
        for index, _ in hosts:
            _set_value(local, index, "--host", loopback.HOST)
        for index, value in rendered_ports:
            _set_value(local, index, "--port", str(ports[int(value)]) if value.isdigit() else value)
        if not hosts:
            local += ["--host", loopback.HOST]
        bound = int(rendered_ports[-1][1]) if rendered_ports else self.default_port
        if not rendered_ports:
            local += ["--port", str(ports[bound])]
        return local, bound

    @contextlib.contextmanager
    def process(self, args: list[str], env: dict[str, str]):
        """The running coordinator process (killed with its process group afterwards)."""
        with tempfile.TemporaryFile() as output:
            proc = subprocess.Popen(
                [self.script, self.subcommand, *args],
                env={**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield proc, output
            finally:
                _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def _output_tail(output, lines: int = 6) -> str:
    output.seek(0)
    text = output.read().decode("utf-8", "replace").strip().splitlines()
    errors = [line for line in text if ": error: " in line or "Error" in line]
    return " | ".join((errors or text)[-lines:])


def _wait_started(proc: subprocess.Popen, output, port: int) -> None:
    started = loopback.wait_until(
        lambda: proc.poll() is not None or loopback.listening(port), START_TIMEOUT
    )
    if proc.poll() is not None:
        raise CheckFailure(f"lmcache coordinator exited {proc.returncode}: {_output_tail(output)}")
    if not started:
        raise CheckFailure(
            f"lmcache coordinator did not listen within {START_TIMEOUT:.0f}s: "
            f"{_output_tail(output)}"
        )


def _metrics_result(
    objects: list[dict], deployment: dict, c: dict, ports: loopback.PortMap, bound: int
):
    """(problem, done) of a GET of what Prometheus scrapes (nothing without a metrics Service)."""
    endpoint = k8s.metrics_endpoint(objects, deployment)
    if endpoint is None:
        return None, "no metrics Service in the case: nothing scraped"
    service_port, path, how = endpoint
    target = k8s.resolve_port(c, service_port.get("targetPort", service_port["port"]))
    problem = loopback.scrape_problem(ports[target], path, target)
    if problem:
        return f"{how}: {problem} (the coordinator serves /metrics on --port {bound})", None
    return None, f"{how} -> container port {target}: GET {path} 200 Prometheus text"


def _probe(
    started: str | CheckFailure,
    proc: subprocess.Popen,
    output,
    objects: list[dict],
    deployment: dict,
    ports: loopback.PortMap,
    bound: int,
) -> str:
    """The deployment's httpGet probes and metrics scrape against the running process."""
    if isinstance(started, CheckFailure):
        raise started
    c = k8s.container(deployment, CONTAINER)
    problems, done = k8s.http_probes(c, ports)
    problems = [f"{p} (the coordinator binds --port {bound})" for p in problems]
    metrics_problem, metrics_done = _metrics_result(objects, deployment, c, ports, bound)
    if metrics_problem:
        problems.append(metrics_problem)
    if proc.poll() is not None:
        problems.append(f"exited {proc.returncode} while probed: {_output_tail(output)}")
    if problems:
        raise CheckFailure("; ".join(problems))
    return f"{started}; " + ", ".join([*done, metrics_done])


def process_key(deployment: dict) -> str:
    """What the coordinator process is started from: deployments with equal keys share one."""
    c = k8s.container(deployment, CONTAINER)
    return json.dumps([c.get("args", []), k8s.container_env(c)], sort_keys=True, default=str)


def static_checks(
    checks: Checks, coordinator: Coordinator, deployment: dict, expected: dict
) -> None:
    """The in-process checks (main thread: argparse error capture swaps sys.stderr)."""
    subject = k8s.name_of(deployment)
    c = k8s.container(deployment, CONTAINER)
    args = [str(a) for a in c.get("args", [])]
    command = c.get("command", [])
    checks.run(
        subject,
        "command is the lmcache console script",
        check_command,
        command,
        coordinator.entry_point,
        coordinator.subcommand,
    )
    checks.run(
        subject,
        "no hidden/deprecated lmcache coordinator options",
        check_no_hidden,
        coordinator.parser,
        args,
    )
    if expected:
        namespace = checks.run(
            subject,
            "args parse with the coordinator parser",
            coordinator.parse,
            args,
            describe=lambda ns: f"{len(vars(ns))} options",
        )
        if namespace is not None:
            checks.run(
                subject, "case expectations (coordinator)", check_expectations, expected, namespace
            )


def process_checks(
    coordinator: Coordinator, members: list[tuple[list[dict], dict]]
) -> list[Checks]:
    """Start one real process for members (objects, deployment) of equal process_key, and
    check each deployment's probes and metrics on it. Thread-safe: processes run in parallel."""
    c = k8s.container(members[0][1], CONTAINER)
    ports = loopback.PortMap()
    args, bound = coordinator.loopback_args([str(a) for a in c.get("args", [])], ports)
    results = []
    started_at = time.monotonic()
    with coordinator.process(args, k8s.container_env(c)) as (proc, output):
        try:
            _wait_started(proc, output, ports[bound])
            started = f"listening after {time.monotonic() - started_at:.1f}s on --port {bound}"
        except CheckFailure as e:
            started = e
        for objects, deployment in members:
            checks = Checks()
            checks.run(
                k8s.name_of(deployment),
                "the real `lmcache coordinator` starts and answers probes and metrics",
                _probe,
                started,
                proc,
                output,
                objects,
                deployment,
                ports,
                bound,
            )
            results.append(checks)
    return results
