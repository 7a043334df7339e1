"""Every CUDA kernel the project launches compiles for real GPUs, without one.

The simulator tests (``test_cuda_kernels.py``, ``test_cuda_training.py``) run the kernels' Python on
the CPU; they do not show that NVVM accepts them. Here each kernel of the modules'
``launched_kernels(dtype)`` lists (the production block sizes, the argument types of the launches)
is compiled to PTX for sm_80 and sm_90, float32 and float64, through NVVM as a GPU run would, and
assembled by ``ptxas`` when one is found (the ``cuda`` extra installs both as wheels). Checked too:

- the lists name every ``@cuda.jit`` kernel of the package, and every device function is called by
  a listed kernel (a new kernel cannot be forgotten);
- float32 kernels compute in float32: no ``.f64`` instruction in their PTX (the clipping kernels of
  ``updates_cuda`` take float64 arrays and sum in float64 on purpose; they are not float32 kernels);
- the lists hold the argument types the host code really launches with: ``_cuda_launches_sim.py``
  records the launches of device training and inference (evaluate, predict, exported models) under the
  simulator (marked cudasim), and checks that inference launches no backward or optimizer kernel.

Skipped with the reason when no NVVM can be loaded (no CUDA toolkit and no ``nvidia-cuda-nvcc`` wheel).
"""

import ast
import concurrent.futures
import functools
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from _cuda_subprocess import run_simulated

CCS = ((8, 0), (9, 0))
DTYPES = ("float32", "float64")
KERNELS_DIR = Path(importlib.util.find_spec("minirnn.kernels").origin).parent


# ---- what the package defines (read from the source) -----------------------------------------

def _is_cuda_jit(node):
    """(is cuda.jit, device) for a decorator or a call's function."""
    target = node.func if isinstance(node, ast.Call) else node
    if not (isinstance(target, ast.Attribute) and target.attr == "jit" and isinstance(target.value, ast.Name)
            and target.value.id == "cuda"):
        return False, False
    device = isinstance(node, ast.Call) and any(
        k.arg == "device" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords)
    return True, device


def defined_cuda_functions():
    """{module: {qualname: device}} of the functions the kernels package compiles with cuda.jit:
    decorated (``@cuda.jit``, ``@cuda.jit(device=True)``) or wrapped (``cuda.jit(device=True)(f)``)."""
    found = {}
    for path in sorted(KERNELS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module = f"minirnn.kernels.{path.stem}"
        defs = {}

        def visit(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                    qual = prefix + child.name
                    if isinstance(child, ast.FunctionDef):
                        for dec in child.decorator_list:
                            jit, device = _is_cuda_jit(dec)
                            if jit:
                                defs[qual] = device
                    inner = qual + (".<locals>." if isinstance(child, ast.FunctionDef) else ".")
                    visit(child, inner)
                else:
                    visit(child, prefix)
            for child in ast.walk(node) if prefix == "" else ():
                # cuda.jit(...)(f) at module level: f is a module function
                if isinstance(child, ast.Call) and isinstance(child.func, ast.Call) and child.args:
                    jit, device = _is_cuda_jit(child.func)
                    if jit and isinstance(child.args[0], ast.Name):
                        defs[child.args[0].id] = device

        visit(tree, "")
        if defs:
            found[module] = defs
    return found


# ---- NVVM, ptxas ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _numba_cuda():
    """numba.cuda with a loadable NVVM, or pytest.skip with the reason."""
    from numba import config
    if config.ENABLE_CUDASIM:
        pytest.skip("NUMBA_ENABLE_CUDASIM=1: the simulator compiles nothing to PTX")
    try:
        from numba import cuda
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:                       # no toolkit, no wheel: nothing can compile PTX
        pytest.skip(f"no NVVM to compile PTX with ({type(exc).__name__}: {str(exc).strip()[:300]}); "
                    "pip install \".[cuda]\" in the checkout brings it as a wheel")
    return cuda


def _ptxas_version(path):
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    except OSError:
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


@functools.lru_cache(maxsize=None)
def find_ptxas():
    """The newest ptxas found (the nvidia-cuda-nvcc wheel, CUDA_HOME, PATH, /usr/local/cuda), or None.
    The newest, because a ptxas refuses PTX from a newer NVVM."""
    candidates = []
    spec = importlib.util.find_spec("nvidia.cuda_nvcc") if importlib.util.find_spec("nvidia") else None
    if spec is not None:
        candidates += [os.path.join(p, "bin", "ptxas") for p in spec.submodule_search_locations or ()]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "ptxas"))
    candidates += [shutil.which("ptxas"), "/usr/local/cuda/bin/ptxas"]
    found = [(v, c) for c in dict.fromkeys(c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK))
             if (v := _ptxas_version(c)) is not None]
    return max(found)[1] if found else None


def ptxas(path, ptx, cc):
    """(returncode, output) of ``ptxas -v`` assembling ``ptx`` for sm_<cc>."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run([path, f"-arch=sm_{cc[0]}{cc[1]}", "-v", "-o", os.path.join(tmp, "k.cubin"), src],
                              capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


# ---- compiling the lists ----------------------------------------------------------------------

def launched():
    """[(module, kernel dispatcher, argument types, dtype)] from every module that defines kernels."""
    out = []
    for module in defined_cuda_functions():
        mod = importlib.import_module(module)
        assert hasattr(mod, "launched_kernels"), f"{module} defines CUDA kernels but no launched_kernels(dtype)"
        for dtype in DTYPES:
            out += [(module, kernel, tuple(types), dtype) for kernel, types in mod.launched_kernels(dtype)]
    return out


def _name(module, kernel):
    return f"{module.rsplit('.', 1)[1]}.{kernel.py_func.__qualname__.replace('.<locals>.', '.')}"


@pytest.fixture(scope="module")
def compiled():
    """{(name, types, dtype, cc): ptx or the exception} for every listed kernel and both targets."""
    cuda = _numba_cuda()
    import numba.cuda.dispatcher as dispatcher

    class Target:                                  # device functions compile for "the current device"
        compute_capability = CCS[0]

    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dispatcher, "get_current_device", lambda: Target, raising=False)
        for module, kernel, types, dtype in launched():
            for cc in CCS:
                Target.compute_capability = cc
                try:
                    ptx, _ = cuda.compile_ptx(kernel.py_func, types, cc=cc)
                except Exception as exc:           # collected: every failure is reported at once
                    ptx = exc
                results[(_name(module, kernel), types, dtype, cc)] = ptx
    return results


def _label(key):
    name, types, dtype, cc = key
    return f"{name} {dtype} sm_{cc[0]}{cc[1]} ({', '.join(str(t) for t in types)})"


def test_lists_name_every_kernel_and_reach_every_device_function():
    defined = defined_cuda_functions()
    assert set(defined) >= {"minirnn.kernels.cuda_common", "minirnn.kernels.lstm_cuda"}, defined
    listed = {(m, k.py_func.__qualname__ if hasattr(k, "py_func") else k.fn.__qualname__)
              for m, k, _, _ in launched()}
    kernels = {(m, q) for m, defs in defined.items() for q, device in defs.items() if not device}
    assert not kernels - listed, f"@cuda.jit kernels missing from launched_kernels(): {sorted(kernels - listed)}"

    def callees(func, seen):
        # the CUDA dispatchers a kernel or device function reaches: closure cells and globals it names
        refs = [c.cell_contents for c in func.__closure__ or ()]
        refs += [func.__globals__[n] for n in func.__code__.co_names if n in func.__globals__]
        for ref in refs:
            target = getattr(ref, "py_func", None) or getattr(ref, "fn", None)
            if callable(target) and getattr(target, "__module__", "").startswith("minirnn.kernels") \
                    and (target.__module__, target.__qualname__) not in seen:
                seen.add((target.__module__, target.__qualname__))
                callees(target, seen)
        return seen

    reached = set()
    for m, k, _, _ in launched():
        callees(getattr(k, "py_func", None) or k.fn, reached)
    devices = {(m, q) for m, defs in defined.items() for q, device in defs.items() if device}
    assert not devices - reached, f"device functions no listed kernel calls: {sorted(devices - reached)}"


@pytest.mark.slow
def test_every_launched_kernel_compiles_to_ptx(compiled):
    failures = [f"{_label(k)}: {type(v).__name__}: {v}" for k, v in compiled.items() if isinstance(v, Exception)]
    assert not failures, "\n\n".join(failures)
    names = {k[0] for k in compiled}
    for expected in ("lstm_cuda._kernels.forward_step", "gru_cuda._kernels.backward_r",
                     "cuda_common._matmul_kernel.matmul_kernel", "updates_cuda.kernels.ftrl"):
        assert expected in names, sorted(names)
    for (name, _, _, cc), ptx in compiled.items():
        assert f".target sm_{cc[0]}{cc[1]}" in ptx, name


@pytest.mark.slow
def test_ptxas_assembles_every_kernel(compiled):
    path = find_ptxas()
    if path is None:
        pytest.skip("no ptxas found (CUDA toolkit or the nvidia-cuda-nvcc wheel): PTX is checked, not assembled")
    jobs = {k: v for k, v in compiled.items() if not isinstance(v, Exception)}
    with concurrent.futures.ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        done = dict(zip(jobs, pool.map(lambda kv: ptxas(path, kv[1], kv[0][3]), jobs.items())))
    failures = [f"{_label(k)}:\n{out}" for k, (rc, out) in done.items() if rc != 0]
    assert not failures, f"{path}:\n" + "\n\n".join(failures)


F64 = re.compile(r"^\s*[^/\s][^\n]*\.f64\b[^\n]*", re.M)       # an instruction or declaration with .f64


@pytest.mark.slow
def test_float32_kernels_compute_in_float32(compiled):
    from numba import types as nt
    checked, failures = 0, []
    for key, ptx in compiled.items():
        name, types, dtype, _ = key
        floats = [t.dtype if isinstance(t, nt.Array) else t for t in types]
        if dtype != "float32" or isinstance(ptx, Exception) or nt.float64 in floats:
            continue                               # float64 kernels, and the float64 clipping sums
        checked += 1
        bad = F64.findall(ptx)
        if bad:
            failures.append(f"{_label(key)}: {len(bad)} float64 lines, e.g.\n  " +
                            "\n  ".join(line.strip() for line in bad[:5]))
    assert checked >= 20, checked
    assert not failures, "\n".join(failures)


@pytest.mark.cudasim
def test_lists_hold_the_launches_of_device_training_and_inference(tmp_path):
    run_simulated("_cuda_launches_sim.py", tmp_path)


def test_float32_check_catches_a_float64_accumulator():
    """The float32 check sees a float64 literal promoting a float32 sum (the bug it guards against)."""
    cuda = _numba_cuda()
    from numba import types as nt

    def kernel(a, out):
        s = 0.0
        for i in range(a.shape[0]):
            s += a[i]
        out[0] = s

    ptx, _ = cuda.compile_ptx(kernel, (nt.float32[::1], nt.float32[::1]), cc=CCS[0])
    assert F64.search(ptx) and "cvt.f64.f32" in ptx
