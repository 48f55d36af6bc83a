"""Conformance driver: rendered objects vs. the released lmcache and vLLM (see README.md).

Run with the python of the venv that setup.sh prints:

    python check.py --input DIR [--report FILE.json] [--jobs N]

Exit status: 0 every case met its expectation, 1 some did not, 3 some case could not be
judged (a harness error, e.g. an L2 adapter module that does not import in the venv).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import glob
import importlib
import importlib.metadata
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STUBS = os.path.join(HERE, "stubs")

# Before lmcache/vLLM are imported: no telemetry, quiet loggers. (Not HF_HUB_OFFLINE: with
# it, EngineArgs resolves the model to a local snapshot; the network guard stops any fetch.)
os.environ.update(
    {
        "LMCACHE_DISABLE_BANNER": "1",
        "LMCACHE_TRACK_USAGE": "false",
        "LMCACHE_LOG_LEVEL": "ERROR",
        "DO_NOT_TRACK": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_LOGGING_LEVEL": "ERROR",
    }
)
sys.path.insert(0, STUBS)
import conformance_stubs  # noqa: E402

conformance_stubs.install()

import adapters  # noqa: E402
import coordinator  # noqa: E402
import engine  # noqa: E402
import workload  # noqa: E402
from outcome import Checks  # noqa: E402

EXPECTATION_KINDS = {"engine", "coordinator", "vllm"}


class Released:
    """The released software, each part loaded on first use (vLLM alone takes seconds)."""

    @functools.cached_property
    def adapters(self) -> adapters.Survey:
        return adapters.Survey()

    @functools.cached_property
    def server(self):
        from lmcache_cli import LMCacheServer

        return LMCacheServer()

    @functools.cached_property
    def coordinator(self):
        return coordinator.Coordinator(STUBS)

    @functools.cached_property
    def vllm(self):
        from vllm_serve import VLLMServe

        return VLLMServe()

    def load_all(self) -> None:
        for part in (self.adapters, self.server, self.coordinator, self.vllm):
            assert part is not None
        # What `lmcache coordinator` imports in its own process (CoordinatorCommand.execute).
        importlib.import_module("lmcache.v1.mp_coordinator.app")
        importlib.import_module("lmcache.v1.mp_coordinator.observability")


def load_case(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        case = json.load(f)
    if case.get("expect") not in ("pass", "fail") or not isinstance(case.get("objects"), list):
        raise ValueError('a case needs "expect": "pass"|"fail" and an "objects" list')
    unknown = set(case.get("expectations", {})) - EXPECTATION_KINDS
    if unknown:
        raise ValueError(
            f"unknown expectations {sorted(unknown)}; known: {sorted(EXPECTATION_KINDS)}"
        )
    case.setdefault("name", os.path.basename(path))
    # A verdict that differs by LMCache release, e.g. a default that changed.
    case["expect"] = case.get("expect_for_lmcache", {}).get(version("lmcache"), case["expect"])
    return case


def in_process_checks(case: dict, released: Released) -> Checks:
    """Every check that runs in this interpreter, in object order."""
    checks = Checks()
    objects, expected = case["objects"], case.get("expectations", {})
    for obj in objects:
        if engine.is_engine(obj):
            engine.check(
                checks, released.server, released.adapters, objects, obj, expected.get("engine", {})
            )
        elif coordinator.is_coordinator(obj):
            coordinator.static_checks(
                checks, released.coordinator, obj, expected.get("coordinator", {})
            )
        elif workload.is_connection(obj):
            workload.check_connection(checks, released.vllm, obj)
        if workload.is_injected(obj):
            workload.check_injected(checks, released.vllm, obj, expected.get("vllm", {}))
    return checks


def start_processes(pool, cases: list[dict], released: Released) -> dict[int, list]:
    """Start every case's coordinators on the pool, one process per distinct process_key.

    Returns case index -> [(future, position of the case's deployment in its result)].
    """
    groups: dict[str, list] = {}
    for i, case in enumerate(cases):
        for obj in case.get("objects", []):
            if coordinator.is_coordinator(obj):
                groups.setdefault(coordinator.process_key(obj), []).append(
                    (i, case["objects"], obj)
                )
    futures: dict[int, list] = {}
    for members in groups.values():
        future = pool.submit(
            coordinator.process_checks, released.coordinator, [m[1:] for m in members]
        )
        for position, (i, _, _) in enumerate(members):
            futures.setdefault(i, []).append((future, position))
    return futures


def verdict(case: dict, checks: Checks) -> tuple[bool, str]:
    failures = checks.failures
    if not checks.items:
        return False, "nothing to check: no engine, coordinator, connection or injected workload"
    if checks.harness_errors:
        return False, "harness error"
    if case["expect"] == "fail":
        return (
            (True, "rejected as expected")
            if failures
            else (False, "expected a rejection, every check passed")
        )
    return (not failures), ("" if not failures else f"{len(failures)} check(s) failed")


def print_case(case: dict, ok: bool, why: str, checks: Checks) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {case['name']}" + (f": {why}" if why else ""))
    for item in checks.failures if (not ok or case["expect"] == "fail") else []:
        kind = "HARNESS ERROR " if item["harness_error"] else ""
        print(f"    {kind}{item['object']}: {item['check']}: {item['detail']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="directory of *.json case files")
    parser.add_argument("--report", help="write a JSON report here")
    parser.add_argument("--jobs", type=int, default=3, help="coordinator processes at once")
    parser.add_argument(
        "--warm-up",
        action="store_true",
        help="import everything the checks and the coordinator process load, then exit "
        "(setup.sh runs it once, so that the bytecode is cached and the venv proven)",
    )
    options = parser.parse_args()
    if options.warm_up:
        released = Released()
        released.load_all()
        print("\n".join(released.adapters.summary()), file=sys.stderr)
        return 0
    if not options.input:
        parser.error("--input is required")
    started = time.monotonic()
    paths = sorted(glob.glob(os.path.join(options.input, "*.json")))
    if not paths:
        print(f"no *.json case files in {options.input}")
        return 2
    cases, load_errors = [], {}
    for path in paths:
        try:
            cases.append(dict(load_case(path), file=path))
        except (OSError, ValueError) as e:
            load_errors[path] = str(e)
            cases.append(
                {"name": os.path.basename(path), "expect": "pass", "objects": [], "file": path}
            )
    released = Released()
    # Before any case: import every L2 adapter module as lmcache does, and say which do not.
    print("\n".join(released.adapters.summary()))
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        processes = start_processes(pool, cases, released)
        for i, case in enumerate(cases):
            checks = Checks()
            if case["file"] in load_errors:
                checks.record(
                    case["file"], "case file", False, load_errors[case["file"]], error=True
                )
            else:
                checks = in_process_checks(case, released)
            for future, position in processes.get(i, []):
                try:
                    checks.items.extend(future.result()[position].items)
                except Exception as e:  # noqa: BLE001 - a harness error, reported
                    detail = f"{e.__class__.__name__}: {e}"
                    checks.record(case["name"], "coordinator process", False, detail, error=True)
            ok, why = verdict(case, checks)
            print_case(case, ok, why, checks)
            results.append(report_entry(case, ok, why, checks))
    passed = sum(r["ok"] for r in results)
    seconds = time.monotonic() - started
    if options.report:
        write_report(options.report, results, seconds, released.adapters)
    print(
        f"lmcache {version('lmcache')}, vllm {version('vllm')}: "
        f"{len(results)} cases in {seconds:.1f}s"
    )
    harness = [r["name"] for r in results if r["harness_errors"]]
    if harness:
        print(
            f"HARNESS ERROR in {len(harness)} case(s), which the suite could not judge (no "
            f"verdict on the product; fix the venv or the suite): {', '.join(harness)}"
        )
    print(f"{passed} passed, {len(results) - passed} failed")
    if harness:
        return 3
    return 0 if passed == len(results) else 1


def report_entry(case: dict, ok: bool, why: str, checks: Checks) -> dict:
    return {
        "name": case["name"],
        "file": case["file"],
        "expect": case["expect"],
        "ok": ok,
        "verdict": why,
        "checks": checks.items,
        "failures": checks.failures,
        "harness_errors": checks.harness_errors,
    }


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def write_report(path: str, results: list[dict], seconds: float, survey) -> None:
    report = {
        "lmcache": version("lmcache"),
        "vllm": version("vllm"),
        "python": sys.version.split()[0],
        "seconds": round(seconds, 1),
        "passed": sum(r["ok"] for r in results),
        "failed": sum(not r["ok"] for r in results),
        "harness_error_cases": [r["name"] for r in results if r["harness_errors"]],
        # adapter type -> module -> importable? (adapters.py), surveyed before the cases
        "l2_adapters": survey.report(),
        "cases": results,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
