"""Check results: what was checked on which object, and why it failed."""

from __future__ import annotations

import dataclasses
import enum
import traceback


class CheckFailure(Exception):
    """The released software rejects a rendered object, or it would not work (says why)."""


class HarnessError(Exception):
    """The suite cannot judge an object here (says why), e.g. the venv lacks an import the
    released code needs. Recorded as a harness error, never as a verdict on the object."""


class Checks:
    """The checks run on one case, in order."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def record(self, subject: str, check: str, ok: bool, detail: str = "", error: bool = False):
        self.items.append(
            {"object": subject, "check": check, "ok": ok, "detail": detail, "harness_error": error}
        )

    def run(self, subject: str, check: str, fn, *args, describe=None):
        """fn(*args), recorded as passed (detail: a returned str, or describe(value)) or failed.

        Returns fn's value, or None when it failed. HarnessError, or any exception other than
        CheckFailure, is a harness error: the case then fails whatever it expected.
        """
        try:
            value = fn(*args)
        except CheckFailure as e:
            self.record(subject, check, False, str(e))
            return None
        except HarnessError as e:
            self.record(subject, check, False, str(e), error=True)
            return None
        except Exception as e:  # noqa: BLE001 - reported, never hidden
            where = traceback.extract_tb(e.__traceback__)[-1]
            detail = f"{e.__class__.__name__}: {e} ({where.filename}:{where.lineno})"
            self.record(subject, check, False, detail, error=True)
            return None
        detail = describe(value) if describe else (value if isinstance(value, str) else "")
        self.record(subject, check, True, detail)
        return value

    @property
    def failures(self) -> list[dict]:
        return [item for item in self.items if not item["ok"]]

    @property
    def harness_errors(self) -> list[dict]:
        return [item for item in self.items if item["harness_error"]]


def plain(value):
    """value with enums as their names and config objects as dicts, for comparisons."""
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value


_MISSING = object()


def lookup(root, path: str):
    """root.a.b for path "a.b" (attributes, dict keys, or list indexes: "adapters.0");
    _MISSING when absent."""
    value = root
    for part in path.split("."):
        if isinstance(value, (list, tuple)) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else _MISSING
        elif isinstance(value, dict):
            value = value.get(part, _MISSING)
        else:
            value = getattr(value, part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def check_expectations(expected: dict, root, aliases: dict[str, str] | None = None) -> str:
    """CheckFailure listing every expected path whose parsed value differs."""
    aliases = aliases or {}
    wrong = []
    for key, want in expected.items():
        got = lookup(root, aliases.get(key, key))
        if got is _MISSING:
            wrong.append(f"{key}: no such parsed value")
        elif plain(got) != want:
            wrong.append(f"{key}: expected {want!r}, parsed {plain(got)!r}")
    if wrong:
        raise CheckFailure("; ".join(wrong))
    return ", ".join(f"{key}={want!r}" for key, want in expected.items())
