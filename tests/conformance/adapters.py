"""The released lmcache's L2 adapter modules, imported as the package imports them, so that a
package missing from the suite's venv cannot pass for a verdict on `--l2-adapter`.

lmcache finds `lmcache/v1/distributed/l2_adapters/*_l2_adapter.py` with `pkgutil` and imports
them lazily (`factory.ensure_adapter_loaded`, `load_all_adapters`, reached through
`config._ensure_config_loaded`), skipping every module that raises ImportError. Each module
registers its type names (`register_l2_adapter_type("fs", ...)`) when it is imported, so an
adapter whose third-party import is missing here is simply not registered, and
`--l2-adapter '{"type": "fs"}'` then fails as "unknown adapter type" although the released
package, installed with its dependencies, accepts it.

`Survey` repeats that discovery before any case runs and records, per module, whether it
imports and which types it registers (read from its source when it does not import).
`check_types` makes a case that names a type of a module that does not import here a
harness error, never a product failure; `harness_rejection` does the same for the parse.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import pkgutil

from outcome import HarnessError

PACKAGE = "lmcache.v1.distributed.l2_adapters"
OPTION = "--l2-adapter"

# Adapter modules that are known not to import in the suite's venv, and why (README.md,
# "L2 adapter modules"). Every other module must import; one that does not is reported as
# an unexpected gap (a new dependency of a new lmcache release: pin it in requirements.txt).
_NIXL = (
    "nixl is lmcache's optional extra lmcache[nixl]: a compiled UCX/RDMA transfer library "
    "(CUDA wheels), not installed"
)
NOT_INSTALLED = {
    "bigtable_l2_adapter": (
        "google-cloud-bigtable is not installed: its import chain is 13 more wheels (~10 MB), "
        "with compiled grpcio, protobuf and google-crc32c"
    ),
    "nixl_store_l2_adapter": _NIXL,
    "nixl_store_dynamic_l2_adapter": _NIXL,
}

UNRESOLVED = "?"  # a register_l2_adapter_type name that is not a string literal


@dataclasses.dataclass
class AdapterModule:
    module: str
    types: list[str]
    importable: bool
    error: str | None = None
    missing_import: str | None = None
    known_gap: str | None = None

    @property
    def short(self) -> str:
        return self.module.rpartition(".")[2]

    def describe_gap(self) -> str:
        why = (
            f"known gap: {self.known_gap}"
            if self.known_gap
            else "UNEXPECTED: pin the missing package in requirements.txt (--no-deps) or "
            "document the module in adapters.NOT_INSTALLED"
        )
        return f"{self.error}; {why}"


def _declared_types(path: str) -> list[str]:
    """The type names the module's source passes to register_l2_adapter_type."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if called != "register_l2_adapter_type":
            continue
        arg = node.args[0]
        literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
        names.add(arg.value if literal else UNRESOLVED)
    return sorted(names)


class Survey:
    """Every `*_l2_adapter` module of the installed lmcache: importable or not, and why."""

    def __init__(self) -> None:
        package = importlib.import_module(PACKAGE)
        self.registry = importlib.import_module(f"{PACKAGE}.config")._L2_ADAPTER_CONFIG_REGISTRY
        self.modules: list[AdapterModule] = []
        # The package's own discovery (l2_adapters/__init__.py): pkgutil, *_l2_adapter.
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.endswith("_l2_adapter"):
                self.modules.append(self._load(f"{PACKAGE}.{info.name}"))

    def _load(self, name: str) -> AdapterModule:
        declared = _declared_types(importlib.util.find_spec(name).origin)
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - lmcache skips ImportError; anything, reported
            short = name.rpartition(".")[2]
            return AdapterModule(
                name,
                declared,
                False,
                error=f"{e.__class__.__name__}: {e}",
                missing_import=getattr(e, "name", None),
                known_gap=NOT_INSTALLED.get(short),
            )
        registered = {t for t, cls in self.registry.items() if cls.__module__ == name}
        registered |= {t for t in declared if t in self.registry}
        return AdapterModule(name, sorted(registered), True)

    @property
    def failed(self) -> list[AdapterModule]:
        return [m for m in self.modules if not m.importable]

    def owner(self, type_name: str) -> AdapterModule | None:
        for m in self.modules:
            if type_name in m.types:
                return m
        return None

    def unloadable_types(self, args: list[str]) -> dict[str, AdapterModule]:
        """The types named by --l2-adapter in args whose module does not import here."""
        found = {}
        for _, type_name in _named_types(args):
            m = self.owner(type_name) if isinstance(type_name, str) else None
            if m is not None and not m.importable:
                found[type_name] = m
        return found

    def summary(self) -> list[str]:
        """Lines for the console: counts, then every module that does not import."""
        types = sorted(t for m in self.modules if m.importable for t in m.types)
        imported = len(self.modules) - len(self.failed)
        header = (
            f"L2 adapter modules: {imported} of {len(self.modules)} import, registering "
            f"{len(types)} types: {', '.join(types)}"
        )
        lines = [header]
        for m in self.failed:
            lines.append(
                f"  not importable here: {m.short} (types {', '.join(m.types) or 'none'}): "
                f"{m.describe_gap()}"
            )
        if self.failed:
            lines.append("  a case naming one of these types is a HARNESS error, not a verdict")
        return lines

    def report(self) -> list[dict]:
        """(adapter type -> module -> importable?) rows for the JSON report; a module that
        registers no type (a shared helper) has one row with type null."""
        rows = []
        for m in self.modules:
            for type_name in m.types or [None]:
                row = {"type": type_name, "module": m.module, "importable": m.importable}
                if not m.importable:
                    row |= {
                        "error": m.error,
                        "missing_import": m.missing_import,
                        "known_gap": m.known_gap,
                    }
                rows.append(row)
        owned = {t for m in self.modules for t in m.types}
        for type_name in sorted(set(self.registry) - owned):
            module = self.registry[type_name].__module__
            rows.append({"type": type_name, "module": module, "importable": True})
        return rows


def _named_types(args: list[str]) -> list[tuple[int, object]]:
    """(position, "type" value) of every --l2-adapter JSON in args; the value is None when
    the JSON has none or is not an object (lmcache itself rejects those)."""
    values = []
    for i, token in enumerate(args):
        if token == OPTION and i + 1 < len(args):
            values.append(args[i + 1])
        elif token.startswith(OPTION + "="):
            values.append(token.partition("=")[2])
    named = []
    for n, raw in enumerate(values, 1):
        try:
            spec = json.loads(raw)
        except ValueError:
            spec = None
        named.append((n, spec.get("type") if isinstance(spec, dict) else None))
    return named


def has_adapters(args: list[str]) -> bool:
    return bool(_named_types(args))


def check_types(survey: Survey, args: list[str]) -> str:
    """Every --l2-adapter type must be judgeable here: registered by a module that imports,
    or registered by no module at all (then lmcache's rejection is a real one).

    Raises HarnessError for a type whose module does not import in the suite's venv."""
    done = []
    unresolved = [m for m in survey.failed if UNRESOLVED in m.types]
    for n, type_name in _named_types(args):
        if not isinstance(type_name, str):
            done.append(f"#{n}: no string 'type' (lmcache judges it)")
            continue
        m = survey.owner(type_name)
        if m is not None and not m.importable:
            raise HarnessError(
                f"HARNESS: {OPTION} #{n} type {type_name!r} is registered by {m.module}, which "
                f"does not import in the conformance venv ({m.describe_gap()}). lmcache skips "
                "such a module, so the type would be rejected here as unknown: no verdict on "
                "the object"
            )
        if m is None and unresolved:
            raise HarnessError(
                f"HARNESS: {OPTION} #{n} type {type_name!r} is registered by no importable "
                f"module, and {', '.join(u.module for u in unresolved)} (not importable here) "
                "registers a name the suite cannot read from its source"
            )
        done.append(
            f"#{n} {type_name!r}: {m.short}"
            if m
            else f"#{n} {type_name!r}: registered by no adapter module of this lmcache"
        )
    return "; ".join(done)


def harness_rejection(survey: Survey, args: list[str], rejection: str) -> None:
    """Raise HarnessError when lmcache's rejection of args names a type whose module does not
    import here (the message would otherwise read as a product failure)."""
    for type_name, m in survey.unloadable_types(args).items():
        if repr(type_name) in rejection or f'"{type_name}"' in rejection:
            raise HarnessError(
                f"HARNESS: {rejection} -- an artefact of the venv: {m.module} does not import "
                f"here ({m.error})"
            )
