"""The released `vllm serve` argument machinery and vLLM's KV-transfer config.

The parser is built as `vllm serve` builds it. `ServeSubcommand.subparser_init`
(vllm/entrypoints/cli/serve.py) is `subparsers.add_parser("serve", ...)` on the CLI's
FlexibleArgumentParser followed by `make_arg_parser` (vllm/entrypoints/common/cli_args.py);
its `validate` is `validate_parsed_serve_args`, and `cmd` starts with `args.model =
args.model_tag`. These are called here directly: importing serve.py itself imports the whole
API server, whose request models need real torch values. `AsyncEngineArgs.from_cli_args` then
builds the engine arguments; nothing past that (`create_engine_config` would fetch the
model's config).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json

from outcome import CheckFailure, plain


def _use_cuda_platform() -> None:
    """Select vLLM's CUDA platform, which vLLM detects on the GPU nodes the pods run on.

    Detection needs NVML; without it vLLM resolves no platform and cannot build its
    DeviceConfig default. It must happen before anything resolves `current_platform`.
    """
    import vllm.platforms
    from vllm.platforms.cuda import CudaPlatform

    if vllm.platforms._current_platform is not None:
        raise RuntimeError(f"vLLM resolved a platform first: {vllm.platforms._current_platform}")
    vllm.platforms.current_platform = CudaPlatform()


def _strip_vllm_serve(args: list[str]) -> list[str]:
    return args[2:] if args[:2] == ["vllm", "serve"] else args


class VLLMServe:
    def __init__(self) -> None:
        _use_cuda_platform()
        from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        self.root = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
        subparsers = self.root.add_subparsers(required=False, dest="subparser")
        make_arg_parser(subparsers.add_parser("serve", usage="vllm serve [model_tag] [options]"))
        self.validate = validate_parsed_serve_args
        self.engine_args_cls = AsyncEngineArgs
        self.connectors = KVConnectorFactory._registry

    def engine_args(self, args: list[str]):
        """AsyncEngineArgs from a container's args; CheckFailure with vLLM's error text."""
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                parsed = self.root.parse_args(["serve", *_strip_vllm_serve(args)])
        except SystemExit:
            text = stderr.getvalue()
            error = text[text.find("error:") :] if "error:" in text else text
            raise CheckFailure(f"vllm serve parser: {' '.join(error.split())}") from None
        try:
            self.validate(parsed)
        except (ValueError, TypeError, argparse.ArgumentError) as e:
            raise CheckFailure(f"vllm serve validation: {e}") from None
        if getattr(parsed, "model_tag", None) is not None:
            parsed.model = parsed.model_tag
        return self.engine_args_cls.from_cli_args(parsed)

    def kv_transfer_config(self, text: str):
        """The KVTransferConfig vLLM makes of a --kv-transfer-config value."""
        return self.engine_args(["model", "--kv-transfer-config", text]).kv_transfer_config

    def check_connector(self, config) -> str:
        """What is known of the connector the config names; CheckFailure if vLLM lacks it."""
        if config.kv_connector_module_path:
            return (
                f"{config.kv_connector} from external module {config.kv_connector_module_path}"
                " (not checked: not part of vLLM)"
            )
        if config.kv_connector not in self.connectors:
            raise CheckFailure(f"vLLM has no KV connector {config.kv_connector!r}")
        connector = self.connectors[config.kv_connector]()
        return f"{config.kv_connector} = {connector.__module__}.{connector.__qualname__}"


def compare_json(given: dict, parsed) -> list[str]:
    """Keys of the given JSON whose parsed value differs (parsed may be a config object)."""
    parsed_plain = plain(parsed)
    return [
        f"{key}: given {value!r}, vLLM parsed {parsed_plain.get(key)!r}"
        for key, value in given.items()
        if parsed_plain.get(key) != plain(value)
    ]


def json_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckFailure(f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise CheckFailure(f"{what} is not a JSON object")
    return value
