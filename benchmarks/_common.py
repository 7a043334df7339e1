"""What the benchmark scripts share: an import of minirnn that is the installed package, the machine
a run is on (CPU model, BLAS library and kernel set), where result rows go, and which peers are
installed.

Importing this module removes a source checkout of minirnn from ``sys.path``: the checkout's
``minirnn/`` folder lacks ``minirnn.kernels``, which exists only in the installed package (the
top-level ``kernels/`` folder is mapped there at install time).
"""

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys

CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
INSTALL = "python3 -m venv .venv && .venv/bin/python -m pip install ."
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def _is_checkout(entry):
    """True for a folder holding minirnn's sources as checked out: minirnn/ without minirnn/kernels/."""
    folder = os.path.abspath(entry or os.getcwd())
    return (os.path.isfile(os.path.join(folder, "minirnn", "__init__.py"))
            and not os.path.isdir(os.path.join(folder, "minirnn", "kernels")))


sys.path[:] = [entry for entry in sys.path if not _is_checkout(entry)]


def require_minirnn():
    """Exit with a clear line when this Python has no installed minirnn."""
    try:
        found = importlib.util.find_spec("minirnn.kernels") is not None
    except ImportError:
        found = False
    if not found:
        sys.exit(f"minirnn is not installed in {sys.executable}: from the repository root run `{INSTALL}`, "
                 f"then run the scripts with .venv/bin/python (see benchmarks/README.md)")


def version(distribution):
    """The installed version of a distribution, or None; imports nothing."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def skip_line(peer, install):
    return f"{peer} is not installed in this Python: skipping the {peer} peer (to compare with it: {install})"


def add_output_argument(parser):
    parser.add_argument("--output", "--out", metavar="FILE",
                        help="also append every JSON line (the machine line first) to FILE; by default the "
                             "lines are printed only and nothing is written")


# ---------------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------------

def cpu_model():
    """lscpu's "Model name", else /proc/cpuinfo's "model name", else platform.processor()."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().lower().startswith("model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for line in _cpuinfo_lines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpuinfo_lines():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def simd_flags():
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [flag for flag in SIMD_FLAGS if flag in flags]
    return []


def _library_owner(path):
    name = os.path.basename(os.path.dirname(path or ""))
    return name.split(".")[0] if name.endswith(".libs") else os.path.basename(path or "?")


def blas_libraries():
    """The BLAS libraries loaded by NumPy and by SciPy (whose BLAS Numba's np.dot, and so minirnn's
    kernels, call): library, version, the kernel set it picked and its thread count in this process.
    From threadpoolctl when installed, else from OpenBLAS itself (SciPy's) and NumPy's build config."""
    import numpy as np
    try:
        import scipy.linalg.cython_blas as scipy_blas
    except ImportError:
        scipy_blas = None
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        found = [{"used_by": _library_owner(info.get("filepath")), "library": info.get("internal_api"),
                  "version": info.get("version"), "kernel": info.get("architecture"),
                  "threads": info.get("num_threads")}
                 for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
        if found:
            return found
    found = []
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        found.append({"used_by": "numpy", "library": blas.get("name"), "version": blas.get("version"),
                      "kernel": "unknown (threadpoolctl is not installed)", "threads": None})
    except (TypeError, KeyError, AttributeError):
        found.append({"used_by": "numpy", "library": "unknown", "version": None, "kernel": None, "threads": None})
    if scipy_blas is not None:
        import ctypes
        try:
            lib = ctypes.CDLL(scipy_blas.__file__)
        except OSError:
            lib = None
        for prefix in ("scipy_openblas", "openblas"):
            get = lib is not None and getattr(lib, prefix + "_get_corename", None)
            if get:
                get.restype, get.argtypes = ctypes.c_char_p, []
                config = getattr(lib, prefix + "_get_config")
                config.restype, config.argtypes = ctypes.c_char_p, []
                threads = getattr(lib, prefix + "_get_num_threads")
                threads.restype, threads.argtypes = ctypes.c_int, []
                words = (config() or b"").decode().split()
                found.append({"used_by": "scipy", "library": "openblas",
                              "version": words[1] if len(words) > 1 else None,
                              "kernel": (get() or b"").decode(), "threads": threads()})
                break
    return found


def machine(**settings):
    """The JSON line that heads a run: CPU, BLAS libraries and kernels, versions, thread variables,
    peers, plus the script's own ``settings``."""
    line = {"bench": "machine", "cpu": cpu_model(), "cpus": os.cpu_count(), "simd": simd_flags(),
            "blas": blas_libraries(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
            "thread_variables": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                            "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
                                 if k in os.environ},
            "python": platform.python_version(),
            "versions": {name: version(name) for name in ("minirnn", "numpy", "scipy", "numba", "torch")}}
    line.update(settings)
    return line


def describe(line):
    """Two lines for a person: the CPU, then each BLAS with its kernel set."""
    simd = f" ({', '.join(line['simd'])})" if line["simd"] else ""
    cpu = f"CPU: {line['cpu']}, {line['cpus']} logical CPUs{simd}; Python {line['python']}"
    parts = []
    for blas in line["blas"]:
        threads = f", {blas['threads']} threads in this process" if blas.get("threads") is not None else ""
        parts.append(f"{blas['used_by']}: {blas['library']} {blas['version'] or ''} kernel {blas['kernel']}{threads}")
    coretype = line["openblas_coretype"] or "unset"
    return cpu + "\n" + f"BLAS: {'; '.join(parts) or 'none found'} (OPENBLAS_CORETYPE {coretype})"


class Report:
    """Prints the machine first, then JSON lines, each also appended to ``output`` when given. The
    machine goes to ``machine_stream`` (standard output unless a script keeps that for its rows)."""

    def __init__(self, output=None, machine_stream=None):
        self.output = output
        self.machine_stream = machine_stream

    def machine(self, **settings):
        line = machine(**settings)
        print(describe(line), file=self.machine_stream or sys.stdout, flush=True)
        self.row(line, self.machine_stream)
        return line

    def row(self, line, stream=None):
        text = json.dumps(line)
        print(text, file=stream or sys.stdout, flush=True)
        if self.output:
            with open(self.output, "a", encoding="utf-8") as f:
                f.write(text + "\n")
