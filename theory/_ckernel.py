"""The compiled noiseless simulator (private): build, cache and call ``_simulate.c``.

``theory.simulate`` runs its noiseless float64 CPU trajectories through this kernel
when a C compiler is available: one fused pass per query (logit, exp, two sums) with
no intermediate tensors and no Python per layer, on worker threads (ctypes releases
the GIL). Everything else -- other dtypes, GPU tensors, autograd, noise, or no
compiler -- uses the pure-torch paths, which are also the reference the tests hold
this kernel to (tests/theory/test_simulate_speed_equiv.py).

The shared library is compiled once per machine and source version with
``$CC`` (else ``cc``/``gcc``/``clang``) at ``-O3 -march=native`` (falling back to
portable flags) and cached under
``$SUPERACT_CACHE_DIR`` (default ``~/.cache/superact_lens``), keyed by a hash of the
source, compiler, flags and CPU. ``SUPERACT_SIMULATE_KERNEL=torch`` turns it off;
``kernel_status()`` says which path is in use and why.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from theory._fast import _FLOOR, _LIM  # the same key cut and exp clamp as the torch path

__all__ = ["compiled_exp", "compiled_trajectory", "kernel_status", "load_kernel"]

_SOURCE = Path(__file__).with_name("_simulate.c")
_CHUNKS_PER_WORKER = 4  # work items per thread, for balance when a core is busy

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {"lib": None, "tried": False, "status": "not built yet"}


def _cache_dir() -> Path:
    root = os.environ.get("SUPERACT_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "superact_lens" / "kernels"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or cc
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_signature() -> str:
    """CPU identity for the cache key (``-march=native`` code is CPU-specific)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _flags() -> list[str]:
    # no contraction: logits round as in the torch reference, fl(fl(s a_j) - fl(s c));
    # the exp polynomial calls fma() itself (one instruction once -march=native has
    # FMA); -fno-math-errno lets fma vectorise. No -ffast-math: IEEE semantics stay.
    return ["-O3", "-std=c99", "-ffp-contract=off", "-fPIC", "-shared", "-fno-math-errno"]


def _arch_flags() -> list[list[str]]:
    """CPU tuning to try, best first; the last (none) works with any C compiler."""
    native = ["-march=native"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        # 512-bit vectors where the CPU has them (gcc defaults to 256 on many Xeons):
        # the exp loop runs ~1.6x faster here
        return [[*native, "-mprefer-vector-width=512"], native, []]
    return [native, []]


def _build(cc: str) -> Path:
    source = _SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    key = hashlib.sha256(
        b"\0".join(
            s if isinstance(s, bytes) else s.encode()
            for s in (source, cc, version.stdout, repr((_flags(), _arch_flags())), _cpu_signature())
        )
    ).hexdigest()[:20]
    target = _cache_dir() / f"superact_simulate_{key}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: build for this process only
        target = Path(tempfile.mkdtemp(prefix="superact_kernel_")) / target.name
    errors = []
    for arch in _arch_flags():
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        cmd = [cc, *_flags(), *arch, str(_SOURCE), "-o", str(tmp_path), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            os.replace(tmp_path, target)  # atomic: concurrent builders are harmless
            return target
        tmp_path.unlink(missing_ok=True)
        errors.append(f"{' '.join(cmd)}: {done.stderr.strip()[-400:]}")
    raise RuntimeError("; ".join(errors))


def load_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, building it on first use; None if it cannot be had."""
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if _state["tried"]:
            return _state["lib"]
        if os.environ.get("SUPERACT_SIMULATE_KERNEL", "").lower() == "torch":
            _state["status"] = "off (SUPERACT_SIMULATE_KERNEL=torch)"
        elif (cc := _compiler()) is None:
            _state["status"] = "no C compiler found (set CC); using the torch path"
        else:
            try:
                lib = ctypes.CDLL(str(_build(cc)))
                fn = lib.superact_trajectory
                p = ctypes.c_void_p
                i64, f64 = ctypes.c_int64, ctypes.c_double
                fn.argtypes = [p, p, i64, i64, p, p, i64, f64, f64, p]
                fn.restype = ctypes.c_int
                lib.superact_exp.argtypes = [p, p, i64]
                lib.superact_exp.restype = None
                _state["lib"] = lib
                _state["status"] = f"compiled ({cc})"
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                _state["status"] = f"build failed, using the torch path: {err}"
                _log.warning("theory.simulate: %s", _state["status"])
        _state["tried"] = True
        return _state["lib"]


def kernel_status() -> str:
    """Which noiseless path ``theory.simulate`` uses on CPU float64, and why."""
    load_kernel()
    return _state["status"]


def compiled_exp(x: Tensor) -> Tensor | None:
    """The kernel's inlined ``exp`` on CPU float64 ``x`` (for the accuracy test)."""
    lib = load_kernel()
    if lib is None:
        return None
    x = x.detach().to(torch.float64).contiguous()
    y = torch.empty_like(x)
    lib.superact_exp(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def compiled_trajectory(a0: Tensor, beta: Tensor, kappa: Tensor, n_layers: int) -> Tensor | None:
    """Noiseless trajectory ``[N, n_layers + 1, T]`` of ``a0`` ``[N, T]`` (CPU float64).

    beta, kappa: ``[N]``. Returns None when the kernel is unavailable. Runs on
    ``torch.get_num_threads()`` worker threads.
    """
    lib = load_kernel()
    if lib is None:
        return None
    N, T = a0.shape
    a, perm = torch.sort(a0, dim=-1, stable=True)
    a, perm = a.contiguous(), perm.contiguous()
    beta, kappa = beta.contiguous(), kappa.contiguous()
    out = a0.new_empty(N, n_layers + 1, T)
    if N == 0:
        return out
    workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1, N))
    size = -(-N // (workers * _CHUNKS_PER_WORKER)) if workers > 1 else N
    d = 8  # bytes per float64 and per int64

    def run(i: int) -> int:
        n = min(size, N - i)
        return lib.superact_trajectory(
            a.data_ptr() + i * T * d,
            perm.data_ptr() + i * T * d,
            n,
            T,
            beta.data_ptr() + i * d,
            kappa.data_ptr() + i * d,
            n_layers,
            _LIM,
            _FLOOR,
            out.data_ptr() + i * (n_layers + 1) * T * d,
        )

    starts = range(0, N, size)
    if workers == 1:
        codes = [run(i) for i in starts]
    else:
        with ThreadPoolExecutor(workers) as pool:
            codes = list(pool.map(run, starts))
    if any(codes):
        raise MemoryError("theory.simulate: the compiled kernel could not allocate its buffer")
    return out
