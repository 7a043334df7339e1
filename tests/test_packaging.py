"""Installation and start-up: light import, kernels under minirnn.kernels, guarded Numba cache."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest


def _python(code, tmp_path, env=None):
    """Run ``code`` in a fresh interpreter from a neutral folder; return its last stdout line as JSON."""
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("MINIRNN_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_is_light_and_compiles_nothing(tmp_path):
    out = _python("""
        import json, sys, time
        t = time.perf_counter()
        import minirnn, minirnn.layers, minirnn.kernels, minirnn.estimator, minirnn.contrib, minirnn.export
        elapsed = time.perf_counter() - t
        print(json.dumps({"numba": "numba" in sys.modules, "scipy": "scipy" in sys.modules,
                          "seconds": elapsed}))
    """, tmp_path)
    assert out == {"numba": False, "scipy": False, "seconds": out["seconds"]}


def test_kernels_install_as_minirnn_kernels_only(tmp_path):
    out = _python("""
        import importlib.util, json, os
        import minirnn.kernels
        print(json.dumps({"top_level": importlib.util.find_spec("kernels") is not None,
                          "file": minirnn.kernels.__file__}))
    """, tmp_path)
    assert out["top_level"] is False
    assert os.path.basename(os.path.dirname(out["file"])) == "kernels"


RUN_LSTM = """
    import json, numpy as np
    from minirnn.layers import LSTM
    from minirnn.kernels import lstm
    from minirnn.kernels._threads import small_products_in_blas
    y = LSTM(3, seed=0).forward(np.ones((2, 4, 3), np.float32))
    loop = lstm.loops(small_products_in_blas()).forward
    print(json.dumps({"finite": bool(np.isfinite(y).all()), "hits": sum(loop.stats.cache_hits.values()),
                      "cache": type(loop._cache).__name__}))
"""


RUN_VARIANT = """
    import json, sys, numpy as np
    from minirnn.kernels import _threads, linalg, lstm
    _threads._blas_small = sys.argv[1] == "blas"          # the choice small_products_in_blas() makes once
    x = np.ones((2, 4, 3), np.float32)
    states = (np.zeros((2, 5), np.float32),) * 2
    W, U, b = np.ones((3, 20), np.float32), np.ones((5, 20), np.float32), np.zeros(20, np.float32)
    y = lstm.forward(x, np.ones((2, 4), bool), states, W, U, b, training=False)[0]
    stats = lstm.loops(sys.argv[1] == "blas").forward.stats
    print(json.dumps({"y": y.tolist(), "hits": sum(stats.cache_hits.values()),
                      "misses": sum(stats.cache_misses.values()),
                      "loops_compiled": [f.__name__ for f in (linalg.matmul_rows, linalg.matmul_bt) if f.signatures]}))
"""


def test_threads_asking_at_once_get_one_product_choice_and_one_set_of_loops(tmp_path):
    # a first split call asks from every row block's thread at once, while the BLAS is still being
    # looked up (SciPy imports then): every thread must get the same choice and the same compiled
    # loops, or the blocks would round differently and compile twice
    out = _python("""
        import json, threading
        from minirnn.kernels import _threads, gru, lstm
        barrier, seen = threading.Barrier(4), []
        def ask():
            barrier.wait()
            blas = _threads.small_products_in_blas()
            seen.append((blas, _threads.available_threads(), id(lstm.loops(blas)), id(gru.loops(blas))))
        threads = [threading.Thread(target=ask) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(json.dumps({"distinct": len(set(seen)), "asked": len(seen)}))
    """, tmp_path)
    assert out == {"distinct": 1, "asked": 4}


@pytest.mark.slow
def test_each_product_variant_compiles_only_its_own_products_and_caches_apart(tmp_path):
    # the BLAS variant of a cell's loops never compiles the blocked loops; each variant has its own
    # cache entry, so a process that chose the other one neither recompiles nor loads the wrong one
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run(variant):
        code = "import sys; sys.argv[1:] = [%r]\n" % variant + textwrap.dedent(RUN_VARIANT)
        return _python(code, tmp_path, env)
    blas, loops = run("blas"), run("loops")
    assert blas["loops_compiled"] == [] and loops["loops_compiled"] == ["matmul_rows", "matmul_bt"]
    assert blas["misses"] == loops["misses"] == 1 and blas["hits"] == loops["hits"] == 0
    np.testing.assert_allclose(blas["y"], loops["y"], rtol=1e-5)
    again_blas, again_loops = run("blas"), run("loops")
    assert (again_blas["hits"], again_blas["misses"], again_loops["hits"], again_loops["misses"]) == (1, 0, 1, 0)
    assert again_blas["loops_compiled"] == [] and again_blas["y"] == blas["y"] and again_loops["y"] == loops["y"]


@pytest.mark.slow
def test_compiled_kernels_are_cached_between_processes(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = _python(RUN_LSTM, tmp_path, env)
    assert first["finite"] and first["cache"] == "FunctionCache"
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path / "cache") for name in files)
    second = _python(RUN_LSTM, tmp_path, env)
    assert second["finite"] and second["hits"] >= 1


@pytest.mark.slow
def test_read_only_install_still_imports_and_runs(tmp_path):
    # Numba finds no writable cache location (read-only site-packages, no writable home): the kernel
    # decorator must fall back to compiling without a cache instead of failing at import.
    patch = """
        from numba.core import caching
        def read_only(self):
            raise PermissionError("read-only file system")
        caching._CacheLocator.ensure_cache_path = read_only
    """
    out = _python(textwrap.dedent(patch) + textwrap.dedent(RUN_LSTM), tmp_path)
    assert out["finite"] and out["cache"] == "NullCache"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_source_checkout_import_says_what_to_do():
    proc = subprocess.run([sys.executable, "-c", "import minirnn.layers"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        pytest.skip("this checkout has minirnn.kernels importable in place (editable install)")
    assert "source checkout" in proc.stderr and "pip install ." in proc.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P needs Python 3.11")
def test_readme_main_job_command_runs_from_the_checkout():
    proc = subprocess.run([sys.executable, "-P", "-m", "minirnn", "--steps", "20"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "evaluation on 370 test utterances" in proc.stdout and "predicts the same" in proc.stdout


def test_every_package_of_the_source_is_installed():
    """pyproject.toml lists packages by hand: a new subpackage missing there is absent from a wheel
    (an editable install hides it)."""
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(root, "pyproject.toml"), encoding="utf-8").read()
    listed = set(re.findall(r'"([\w.]+)"', re.search(r"^packages = \[(.*)\]$", text, re.M).group(1)))
    found = {"minirnn.kernels"}
    for directory, dirs, files in os.walk(os.path.join(root, "minirnn")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" in files:
            found.add(os.path.relpath(directory, root).replace(os.sep, "."))
    assert found == listed, f"pyproject.toml packages: {sorted(listed)}; the source has {sorted(found)}"


def test_the_package_shows_its_public_names():
    code = ("import sys, inspect, minirnn\n"
            "names = [n for n in dir(minirnn) if not n.startswith('_')]\n"
            "assert set(minirnn.__all__) - {'__version__'} <= set(names), names\n"
            "assert {'sklearn', 'distributed', 'cuda', 'onnx_export', 'RNNClassifier'} <= set(names), names\n"
            "assert 'importlib' not in names\n"
            "assert 'minirnn.estimator' not in sys.modules and 'numba' not in sys.modules   # dir() loads nothing\n"
            "assert 'cell_type=USE_DEFAULT' in str(inspect.signature(minirnn.RNNClassifier))\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_reprs_say_what_things_are(tmp_path):
    import minirnn
    from minirnn import feature_column as fc
    column = fc.embedding_column(fc.sequence_categorical_column_with_identity("tokens", 100), 8)
    assert repr(column).startswith("EmbeddingColumn(categorical=identity(key='tokens', num_buckets=100")
    clf = minirnn.RNNClassifier([column], units=[4], cell_type="gru", model_dir=str(tmp_path / "m"))
    assert repr(clf) == (f"RNNClassifier(sequence_feature_columns=[{column!r}], units=[4], cell_type='gru', "
                         f"model_dir={str(tmp_path / 'm')!r})")
    clf.train(lambda: ({"tokens": [[1, 2], [3]]}, [0, 1]), steps=1)
    exported = minirnn.load_exported(clf.export_saved_model(str(tmp_path / "e")))
    assert repr(exported).startswith(f"ExportedModel({exported.path!r}, estimator='RNNClassifier', global_step=1, ")
    assert "random_seed=3" in repr(minirnn.RunConfig(random_seed=3))
