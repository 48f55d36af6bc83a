"""Import-time stand-ins that let the released lmcache and vLLM wheels load without torch.

Nothing here replaces code of lmcache or vLLM. Three things are installed, each only because
the real thing cannot exist on this GPU-less machine (or must not be reached from it):

* ``torch`` (and every ``torch.*`` submodule): both packages import torch at module level,
  mostly for type annotations, dtype tables and custom-op registration. The stub resolves
  every name to an empty, falsy class (``torch.cuda.is_available()`` is falsy, decorators
  return the function they wrap); the few names whose value steers the code we run are
  defined explicitly in ``_TORCH_VALUES``. Set ``CONFORMANCE_STUB_TRACE=FILE`` to write every
  torch name that was resolved to FILE at exit.
* compiled extensions that link libtorch: ``lmcache.lmcache_native`` is built from the wheel's
  own ``lmcache_native.pyi`` (its enums and classes, with empty bodies); vLLM's
  ``_C_stable_libtorch`` / ``_qutlass_C`` are empty modules (importing them only registers
  CUDA kernels with torch).
* a network guard: sockets may connect to and bind only loopback addresses, and only loopback
  names resolve, so nothing started by the suite can reach a pod IP or the internet.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import ipaddress
import os
import socket
import sys
import types

_TRACE: set[str] = set()

# vLLM 0.33.0 requires torch==2.14.0; vLLM compares torch versions at import time.
_TORCH_VERSION = "2.14.0"

_EMPTY_EXTENSIONS = {"vllm._C_stable_libtorch", "vllm._qutlass_C"}
_PYI_EXTENSIONS = {"lmcache.lmcache_native"}


def _infer_schema(fn, /, *, mutates_args=(), op_name=None) -> str:
    """A torch op schema string from fn's signature (torch.library.infer_schema's shape).

    vLLM registers its IR ops at import time and asserts that the schema's returned Tensor
    count matches the op's activations, so the string has to be derived from the signature.
    """
    sig = inspect.signature(fn)

    def text(annotation) -> str:
        return annotation if isinstance(annotation, str) else repr(annotation)

    params = ", ".join(f"{text(p.annotation)} {p.name}" for p in sig.parameters.values())
    returned = text(sig.return_annotation)
    tensors = returned.count("Tensor")
    if tensors == 1 and "tuple" not in returned.lower():
        return f"({params}) -> Tensor"
    return f"({params}) -> ({', '.join(['Tensor'] * tensors)})"


_TORCH_VALUES = {
    "torch.library.infer_schema": _infer_schema,
    # vLLM treats a non-None hip version as a ROCm build.
    "torch.version.hip": None,
}


class _Absent(type):
    """Metaclass of every stubbed torch name: an empty class, its attributes more of them."""

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _resolve(cls, f"{cls.__qualname__}.{name}", name)

    def __call__(cls, *args, **kwargs):
        # Used as a decorator (torch.compile(fn), custom_op(...)(fn)): hand the function back.
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]
        return cls

    def __bool__(cls):
        return False


def _resolve(owner, qualname: str, name: str):
    _TRACE.add(qualname)
    value = _TORCH_VALUES.get(qualname)
    if value is None and qualname not in _TORCH_VALUES:
        value = _Absent(name, (), {"__qualname__": qualname, "__module__": "torch"})
    setattr(owner, name, value)
    return value


class _TorchModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _resolve(self, f"{self.__name__}.{name}", name)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        if name in _EMPTY_EXTENSIONS or name in _PYI_EXTENSIONS:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        if spec.name == "torch" or spec.name.startswith("torch."):
            module = _TorchModule(spec.name)
            module.__path__ = []
            return module
        return None

    def exec_module(self, module):
        if module.__name__ == "torch":
            module.__version__ = _TORCH_VERSION
            # Real torch sets this; without it tvm_ffi (via xgrammar) JIT-compiles an addon.
            module.Tensor.__dlpack_c_exchange_api__ = None
        elif module.__name__ in _PYI_EXTENSIONS:
            _exec_pyi(module)


def _exec_pyi(module) -> None:
    """Run the wheel's own type stub of a compiled module as the module's body.

    The stub's annotations name classes declared later, so it is compiled with postponed
    annotations (`annotations` is the __future__ feature imported above).
    """
    package, _, leaf = module.__name__.rpartition(".")
    root = importlib.util.find_spec(package).submodule_search_locations[0]
    path = os.path.join(root, leaf + ".pyi")
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec", flags=annotations.compiler_flag, dont_inherit=True)
    exec(code, module.__dict__)  # noqa: S102 - the wheel's own declarations


def _is_loopback(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host if isinstance(host, str) else host.decode()).is_loopback
    except ValueError:
        return False


def _guard_network() -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_bind = socket.socket.bind

    def check(sock, address, verb):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise PermissionError(f"conformance network guard: refusing to {verb} {address!r}")

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise socket.gaierror(f"conformance network guard: refusing to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        check(sock, address, "connect to")
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address, "connect to")
        return real_connect_ex(sock, address)

    def bind(sock, address):
        check(sock, address, "bind")
        return real_bind(sock, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.socket.bind = bind


def _write_trace(path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(_TRACE)) + "\n")


def install() -> None:
    """Install the finder (ahead of the real import system) and the network guard, once."""
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
    _guard_network()
    trace = os.environ.get("CONFORMANCE_STUB_TRACE")
    if trace:
        atexit.register(_write_trace, trace)
