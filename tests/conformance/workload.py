"""Checks on the vLLM side: connection ConfigMaps and webhook-injected vLLM containers."""

from __future__ import annotations

import k8s
from outcome import CheckFailure, Checks, check_expectations, lookup, plain
from vllm_serve import VLLMServe, compare_json, json_object

CONNECTION_KEY = "kv-transfer-config.json"
INJECTED = ("lmcache.ai/cacheblend-injected", "lmcache.ai/lmcache-injected")
KV_FLAG = "--kv-transfer-config"
# Short names a case's "vllm" expectations may use, resolved in AsyncEngineArgs.
ALIASES = {
    "cudagraph_mode": "compilation_config.cudagraph_mode",
    "cudagraph_capture_sizes": "compilation_config.cudagraph_capture_sizes",
}


def is_connection(obj: dict) -> bool:
    return obj.get("kind") == "ConfigMap" and CONNECTION_KEY in obj.get("data", {})


def is_injected(obj: dict) -> bool:
    pod = k8s.pod_template(obj)
    annotations = (pod or {}).get("metadata", {}).get("annotations") or {}
    return any(annotations.get(key) == "true" for key in INJECTED)


def _check_connection(vllm: VLLMServe, text: str) -> str:
    given = json_object(text, CONNECTION_KEY)
    parsed = vllm.kv_transfer_config(text)
    wrong = compare_json(given, parsed)
    if wrong:
        raise CheckFailure("; ".join(wrong))
    return vllm.check_connector(parsed)


def check_connection(checks: Checks, vllm: VLLMServe, config_map: dict) -> None:
    text = config_map["data"][CONNECTION_KEY]
    checks.run(
        k8s.name_of(config_map),
        "KVTransferConfig (vLLM --kv-transfer-config)",
        _check_connection,
        vllm,
        text,
    )


def _normalized(args: list[str]) -> list[str]:
    """Option names with `_` spelled `-`, as vLLM's FlexibleArgumentParser reads them."""
    out = []
    for token in args:
        if token.startswith("--"):
            name, sep, value = token.partition("=")
            token = name.replace("_", "-") + sep + value
        out.append(token)
    return out


def _flag_value(args: list[str], names: tuple[str, ...]) -> str | None:
    """The last value given to any of names (`--x v` or `--x=v`): the one argparse keeps."""
    value = None
    for i, token in enumerate(args):
        name, sep, inline = token.partition("=")
        if name in names:
            value = inline if sep else (args[i + 1] if i + 1 < len(args) else None)
    return value


INT_FLAGS = {
    "pipeline_parallel_size": ("--pipeline-parallel-size", "-pp"),
    "block_size": ("--block-size",),
}
BARE_FLAGS = {
    ("--no-enable-chunked-prefill", "--disable-chunked-prefill"): ("enable_chunked_prefill", False),
    ("--enable-chunked-prefill",): ("enable_chunked_prefill", True),
    ("--no-async-scheduling",): ("async_scheduling", False),
    ("--enforce-eager",): ("enforce_eager", True),
}


def _intended(args: list[str]) -> dict:
    """What the rendered flags ask for: AsyncEngineArgs path -> value."""
    want: dict = {}
    cc = _flag_value(args, ("--compilation-config", "-cc"))
    for key, value in (json_object(cc, "--compilation-config") if cc else {}).items():
        want[f"compilation_config.{key}"] = value
    for path, names in INT_FLAGS.items():
        value = _flag_value(args, names)
        if value is not None:
            want[path] = int(value)
    backend = _flag_value(args, ("--attention-backend",))
    if backend is not None:
        want["attention_backend"] = backend
    for token in args:  # the last spelling wins, as in argparse
        for names, (path, value) in BARE_FLAGS.items():
            if token in names:
                want[path] = value
    return want


def _check_intended(engine_args, args: list[str]) -> str:
    args = _normalized(args)
    kv = json_object(_flag_value(args, (KV_FLAG,)), KV_FLAG)
    wrong = compare_json(kv, engine_args.kv_transfer_config)
    want = _intended(args)
    for path, value in want.items():
        got = plain(lookup(engine_args, path))
        if got != value:
            wrong.append(f"{path}: rendered {value!r}, vLLM parsed {got!r}")
    if wrong:
        raise CheckFailure("; ".join(wrong))
    return ", ".join(
        ["kv_transfer_config = the given JSON", *(f"{p}={v!r}" for p, v in want.items())]
    )


def check_injected(checks: Checks, vllm: VLLMServe, obj: dict, expected: dict) -> None:
    for c in k8s.containers(k8s.pod_template(obj)):
        args = [str(a) for a in c.get("args", [])]
        if not any(t.partition("=")[0] == KV_FLAG for t in _normalized(args)):
            continue
        subject = f"{k8s.name_of(obj)} container {c.get('name')}"
        engine_args = checks.run(
            subject,
            "args parse with `vllm serve` into EngineArgs",
            vllm.engine_args,
            args,
            describe=lambda e: f"{type(e).__name__} for model {e.model}",
        )
        if engine_args is None:
            continue
        checks.run(
            subject, "parsed values are the rendered ones", _check_intended, engine_args, args
        )
        if expected:
            checks.run(
                subject,
                "case expectations (vllm)",
                check_expectations,
                expected,
                engine_args,
                ALIASES,
            )
