"""Native kernels (``cuda_ext/``): which ones run, and building them on first use.

Each op is a folder ``cuda_ext/<op>/`` (bindings, CPU kernels, CUDA kernels); its
``torch.autograd.Function`` lives in ``ernerf_core/model/native_<op>.py``. Nothing is compiled
at import: the first call that can use an op builds it with ``torch.utils.cpp_extension``
(ninja) into a cache folder and later processes load the built module from there.

- ``ERNERF_EXT=auto`` (default): the CPU kernels for CPU tensors, the CUDA kernels for CUDA
  tensors. ``cpu`` / ``cuda``: only that device's kernels. ``off``: the pure-PyTorch
  references everywhere.
- ``ERNERF_EXT_CACHE``: the cache root (default ``~/.cache/ernerf/ext``). A build lives in
  ``<root>/<op>_<variant>_<hash>/``; the hash covers the op's sources, the build flags, the
  Python and torch versions (and CUDA's for the CUDA variant), so an edit or an upgrade
  builds afresh and nothing stale is loaded. Builds go to a temporary folder renamed into
  place, under a ``flock`` (released by the OS if the process dies), so two stages starting
  together build once and a killed build leaves nothing that looks finished.
- ``ERNERF_EXT_SRC``: the ``cuda_ext`` folder (default: the one beside the package, which an
  editable install — ``pip install -e .``, what ``make install`` does — always has; a
  non-editable install has no sources and runs the references unless this points to a checkout).

A missing compiler, missing sources or a failed build gives ONE warning per op and variant
and the pure-PyTorch path runs. A failed build leaves ``<dir>.failed`` (the compiler's output)
in the cache so later processes do not spend minutes failing again; delete it to retry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

MODES = ("auto", "cpu", "cuda", "off")
# -march=native: the build is for this machine (the CPU's identity is part of the cache hash, so a
# home folder shared by different CPUs gets one build per CPU type); -ffp-contract=off: no fused
# multiply-adds, so positions and weights round exactly as the PyTorch reference's
CXX_FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fopenmp")
LD_FLAGS = ("-fopenmp",)  # links libgomp.so.1: the process already has torch's copy, so one OpenMP runtime
CUDA_FLAGS = ("-O3", "--use_fast_math")  # fast-math only affects the exp2/division paths, not the gathers

# op -> variant -> (sources relative to cuda_ext/<op>/, headers that are part of the hash)
OPS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "gridencoder": {
        "cpu": (("bindings.cpp", "grid_cpu.cpp"), ("grid_common.h",)),
        "cuda": (("bindings.cpp", "grid_cpu.cpp", "grid_cuda.cu"), ("grid_common.h",)),
    },
    "raymarching": {
        "cpu": (("bindings.cpp", "raymarch_cpu.cpp"), ("raymarch_common.h",)),
        "cuda": (("bindings.cpp", "raymarch_cpu.cpp", "raymarch_cuda.cu"), ("raymarch_common.h",)),
    },
}

_modules: dict[tuple, object] = {}  # (op, variant, src, cache) -> module, or None after a failure
_warned: set[tuple] = set()
_imported: dict[str, object] = {}  # module name -> module: an extension is imported once per process


class NativeUnavailable(RuntimeError):
    """Raised by :func:`build` when an op cannot be built (the message says why)."""


def mode() -> str:
    """The ``ERNERF_EXT`` setting (unknown values warn once and mean ``auto``)."""
    value = os.environ.get("ERNERF_EXT", "auto").strip().lower() or "auto"
    if value not in MODES:
        _warn_once(("mode", value), f"ERNERF_EXT={value!r} is not one of {', '.join(MODES)}; using 'auto'")
        return "auto"
    return value


def variant_for(device: torch.device) -> str | None:
    """The kernel variant ``ERNERF_EXT`` allows for tensors on ``device`` (None: use the reference)."""
    m = mode()
    if m == "off":
        return None
    if device.type == "cpu" and m in ("auto", "cpu"):
        return "cpu"
    if device.type == "cuda" and m in ("auto", "cuda"):
        return "cuda"
    return None


def source_root() -> Path:
    """The ``cuda_ext`` folder: ``ERNERF_EXT_SRC``, else the repository's (beside ``ernerf_core``)."""
    env = os.environ.get("ERNERF_EXT_SRC")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "cuda_ext"


def cache_root() -> Path:
    env = os.environ.get("ERNERF_EXT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ernerf" / "ext"


def _warn_once(key: tuple, message: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def reset() -> None:
    """Forget which modules were chosen and which warnings were given (tests that change the
    environment); imported extensions stay imported."""
    _modules.clear()
    _warned.clear()


def load(op: str, variant: str):
    """The built module of ``op`` for ``variant`` ("cpu" or "cuda"), building it on first use;
    None (after one warning) when it cannot be built."""
    key = (op, variant, str(source_root()), str(cache_root()))
    if key in _modules:
        return _modules[key]
    try:
        module = build(op, variant)
    except NativeUnavailable as err:
        _warn_once(key, f"ernerf native kernels: {op} ({variant}) unavailable, using the pure-PyTorch path: {err}")
        module = None
    _modules[key] = module
    return module


def build_dir_name(op: str, variant: str) -> tuple[str, list[Path]]:
    """(``<op>_<variant>_<hash>``, source paths): the hash of everything the build depends on."""
    if op not in OPS or variant not in OPS[op]:
        raise NativeUnavailable(f"no {variant} variant of op {op!r}")
    folder = source_root() / op
    sources, headers = OPS[op][variant]
    paths = [folder / name for name in sources]
    h = hashlib.sha256()
    for path in paths + [folder / name for name in headers]:
        if not path.is_file():
            raise NativeUnavailable(f"source {path} not found (set ERNERF_EXT_SRC to a checkout's cuda_ext/)")
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(repr((CXX_FLAGS, LD_FLAGS, CUDA_FLAGS if variant == "cuda" else (), torch.__version__,
                   torch.version.cuda if variant == "cuda" else None, sys.version_info[:2], cpu_identity())).encode())
    return f"{op}_{variant}_{h.hexdigest()[:16]}", paths


def cpu_identity() -> str:
    """The CPU model and feature flags (what -march=native compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    keep = [ln for ln in text.splitlines() if ln.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(sorted(set(keep)))


def _import_built(name: str, path: Path):
    if name in _imported:
        return _imported[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _imported[name] = module
    return module


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_toolchain(variant: str) -> None:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise NativeUnavailable(f"no C++ compiler ({cxx!r} not found; install g++ or set CXX)")
    try:
        import ninja  # noqa: F401  (cpp_extension needs the ninja binary it ships)
    except ImportError as err:
        raise NativeUnavailable("the ninja package is missing (pip install -r requirements.txt)") from err
    if variant == "cuda":
        from torch.utils import cpp_extension

        if torch.version.cuda is None:
            raise NativeUnavailable("this torch has no CUDA support")
        home = os.environ.get("CUDA_HOME") or cpp_extension.CUDA_HOME
        if not home or not (Path(home) / "bin" / "nvcc").exists():
            raise NativeUnavailable("nvcc not found (set CUDA_HOME)")


def build(op: str, variant: str):
    """Build (or load from the cache) ``op``'s ``variant``; raises :class:`NativeUnavailable`."""
    dirname, sources = build_dir_name(op, variant)
    name = f"ernerf_{dirname}"
    root = cache_root()
    final = root / dirname
    so = final / f"{name}.so"
    failed = root / f"{dirname}.failed"
    if name in _imported:
        return _imported[name]
    if so.is_file():
        return _import_built(name, so)
    if failed.is_file():
        raise NativeUnavailable(f"an earlier build failed (its output: {failed}; delete that file to retry)")
    _check_toolchain(variant)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{dirname}.lock"):
        if so.is_file():  # built by another process while we waited
            return _import_built(name, so)
        if failed.is_file():
            raise NativeUnavailable(f"the build failed in another process (its output: {failed})")
        from torch.utils import cpp_extension

        tmp = Path(tempfile.mkdtemp(prefix=f"{dirname}.build-", dir=root))
        log.warning("building the native %s kernels (%s) once, into %s (about a minute)", op, variant, final)
        try:
            module = cpp_extension.load(
                name=name, sources=[str(p) for p in sources], build_directory=str(tmp),
                extra_cflags=list(CXX_FLAGS) + (["-DWITH_CUDA"] if variant == "cuda" else []),
                extra_cuda_cflags=list(CUDA_FLAGS) + ["-DWITH_CUDA"], extra_ldflags=list(LD_FLAGS),
                with_cuda=variant == "cuda", verbose=False)
        except Exception as err:  # compiler errors arrive as RuntimeError / CalledProcessError
            text = str(err)
            failed.write_text(text + "\n")
            shutil.rmtree(tmp, ignore_errors=True)
            lines = text.splitlines() or [""]
            first = next((ln for ln in lines if "error" in ln.lower()), lines[0])
            raise NativeUnavailable(f"the build failed ({first.strip()[:300]}); full output in {failed}") from err
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race: its build is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
        _imported[name] = module
        return module
