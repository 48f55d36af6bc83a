"""The released `lmcache` CLI: its console script, subcommand parsers, and `lmcache server`.

`LMCacheServer` is the server's CLI parser, its config objects and its HTTP frontend, one
instance per process. The parse goes through the package's own console-script entry
point (`lmcache.cli.main:main`, which dispatches to `ServerCommand.execute`); only the call
at the very end of `execute` -- `run_http_server(...)` -- is intercepted, to keep the config
objects it is handed. Serving then calls the real `run_http_server` with those objects, with
the HTTP frontend moved to a free loopback port and the coordinator URL (if any) to a closed
loopback port, and with the GPU cache engine (`run_cache_server`) replaced by an offline
stand-in: the only part of the server that needs a GPU and binds the MP port.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.metadata
import io
import logging
import os
import sys
import threading
import types
from collections.abc import Iterator

import loopback
from outcome import CheckFailure

# Options the server parser must have; server.py registers none when an import fails.
REQUIRED_OPTIONS = ("--port", "--l1-size-gb", "--http-host", "--http-port", "--chunk-size")


def console_script(name: str) -> str:
    """The `module:function` of an installed console script (the wheel's entry_points.txt)."""
    found = importlib.metadata.entry_points(group="console_scripts", name=name)
    if not found:
        raise CheckFailure(f"no console script {name!r} is installed")
    return next(iter(found)).value


def subcommand_parser(command_cls) -> argparse.ArgumentParser:
    """The parser `lmcache <command>` gets, registered by the command class itself."""
    root = argparse.ArgumentParser(prog="lmcache")
    subparsers = root.add_subparsers(dest="command")
    command = command_cls()
    command.register(subparsers)
    return subparsers.choices[command.name()]


def hidden_options(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """Rendered options the parser accepts but hides from --help (deprecated aliases)."""
    hidden = []
    for token in args:
        action = parser._option_string_actions.get(token.split("=", 1)[0])
        if action is not None and action.help == argparse.SUPPRESS:
            hidden.append(token.split("=", 1)[0])
    return hidden


def check_command(command: list[str], entry_point: str, subcommand: str) -> str:
    """A container command must end in the `lmcache` console script and the subcommand."""
    if len(command) < 2 or os.path.basename(command[-2]) != "lmcache":
        raise CheckFailure(
            f"command {command} does not end in the lmcache console script + subcommand"
        )
    if entry_point != "lmcache.cli.main:main":
        raise CheckFailure(f"console script lmcache is {entry_point}, not lmcache.cli.main:main")
    if command[-1] != subcommand:
        raise CheckFailure(f"subcommand {command[-1]!r} is not {subcommand!r}")
    return f"{' '.join(command)}: console script lmcache = {entry_point}, subcommand {subcommand}"


def check_no_hidden(parser: argparse.ArgumentParser, args: list[str]) -> str:
    hidden = hidden_options(parser, args)
    if hidden:
        raise CheckFailure(f"hidden (deprecated) options, removed in a later release: {hidden}")
    return "none"


@contextlib.contextmanager
def _lmcache_errors() -> Iterator[list[logging.LogRecord]]:
    """ERROR records of every lmcache logger, collected instead of printed (lmcache loggers
    have their own stderr handlers and do not propagate to the root logger)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("lmcache")
    ]
    saved = [logger.handlers for logger in loggers]
    for logger in loggers:
        logger.handlers = [handler]
    try:
        yield records
    finally:
        for logger, handlers in zip(loggers, saved, strict=True):
            logger.handlers = handlers


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """The container's env on top of ours, as parse_args_to_* read some settings from it."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _exception_text(records: list[logging.LogRecord]) -> str:
    for record in records:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            return f"{error.__class__.__name__}: {error}"
    return "; ".join(record.getMessage() for record in records) or "no error logged"


def _argparse_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    return errors[-1] if errors else stderr.strip()[-500:]


class _OfflineCacheServer:
    """Stands in for `run_cache_server`: the GPU cache engine and the MP (ZMQ/gRPC) server.

    It records how the frontend asked for it to be started, notably whether the standalone
    Prometheus exporter would be started (`start_prometheus_http_server`).
    """

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        engine = types.SimpleNamespace(
            close=lambda: None,
            storage_manager=types.SimpleNamespace(publish_capacity=lambda *a, **k: None),
        )
        return types.SimpleNamespace(close=lambda: None), engine


class _TrackedServers:
    """Replaces the `uvicorn` module seen by http_server.py so the suite can stop the server
    that `run_http_server` builds (it keeps no reference). Config is uvicorn's own."""

    def __init__(self, uvicorn) -> None:
        self.Config = uvicorn.Config
        self.servers: list = []
        tracker = self

        class Server(uvicorn.Server):
            def __init__(self, config):
                super().__init__(config)
                tracker.servers.append(self)
                # Output only: uvicorn.Config has just set its loggers to INFO.
                for name in ("uvicorn.error", "uvicorn.access"):
                    logging.getLogger(name).setLevel(logging.WARNING)

        self.Server = Server


class LMCacheServer:
    def __init__(self) -> None:
        self.entry_point = console_script("lmcache")
        module_name, _, function = self.entry_point.partition(":")
        self.main = getattr(importlib.import_module(module_name), function)
        server_cmd = importlib.import_module("lmcache.cli.commands.server").ServerCommand
        self.subcommand = server_cmd().name()
        self.parser = subcommand_parser(server_cmd)
        missing = [o for o in REQUIRED_OPTIONS if o not in self.parser._option_string_actions]
        if missing:
            raise RuntimeError(f"lmcache server parser lacks {missing}: an import failed")
        self.http_server = importlib.import_module("lmcache.v1.multiprocess.http_server")
        self.run_http_server = self.http_server.run_http_server
        self.cache_server = _OfflineCacheServer()
        self.http_server.run_cache_server = self.cache_server
        import uvicorn

        self.uvicorn = _TrackedServers(uvicorn)
        self.http_server.uvicorn = self.uvicorn

    def configs(self, args: list[str], env: dict[str, str]) -> dict:
        """The config objects `ServerCommand.execute` builds from args, via the real CLI."""
        captured: dict = {}
        stderr = io.StringIO()
        self.http_server.run_http_server = lambda **configs: captured.update(configs)
        argv = sys.argv
        sys.argv = ["lmcache", self.subcommand, *args]
        try:
            with _environment(env), _lmcache_errors() as errors, contextlib.redirect_stderr(stderr):
                self.main()
        except SystemExit as e:
            if e.code == 2:
                raise CheckFailure(
                    f"lmcache server parser: {_argparse_error(stderr.getvalue())}"
                ) from None
            raise CheckFailure(
                f"lmcache server exited {e.code}: {_exception_text(errors)}"
            ) from None
        finally:
            sys.argv = argv
            self.http_server.run_http_server = self.run_http_server
        if not captured:
            raise CheckFailure("lmcache server returned without starting the HTTP server")
        return captured

    @contextlib.contextmanager
    def serve(self, configs: dict, port: int) -> Iterator[dict]:
        """Run the real HTTP frontend on 127.0.0.1:port with configs; yields the recorded
        `run_cache_server` call. Raises CheckFailure when it does not start."""
        local = dict(configs)
        local["http_config"] = dataclasses.replace(
            configs["http_config"], http_host=loopback.HOST, http_port=port
        )
        if configs["coordinator_config"].url:
            closed = f"http://{loopback.HOST}:{loopback.free_port()}"
            local["coordinator_config"] = dataclasses.replace(
                configs["coordinator_config"], url=closed
            )
        self.uvicorn.servers.clear()
        self.cache_server.calls.clear()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.run_http_server(**local)
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                failure.append(e)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            started = loopback.wait_until(
                lambda: (
                    failure or not thread.is_alive() or any(s.started for s in self.uvicorn.servers)
                ),
                timeout=20,
            )
            if failure:
                raise CheckFailure(
                    f"run_http_server: {failure[0].__class__.__name__}: {failure[0]}"
                )
            if not started or not thread.is_alive():
                raise CheckFailure("the HTTP frontend did not start (see its log)")
            yield self.cache_server.calls[0]
        finally:
            for server in self.uvicorn.servers:
                server.should_exit = True
            thread.join(timeout=10)
