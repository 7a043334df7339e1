"""minirnn: recurrent sequence models on NumPy + Numba.

``import minirnn`` is cheap: submodules load on first use and nothing is compiled until a kernel
first runs (compiled kernels are cached on disk for the next process).

Estimators: ``minirnn.RNNClassifier``, ``minirnn.RNNEstimator`` (TF 2.x's interface),
``minirnn.contrib.DynamicRnnEstimator`` (TF1's), ``minirnn.RunConfig``, ``minirnn.load_exported``.

Submodules: ``feature_column``, ``inputs``, ``heads``, ``optimizers``, ``metrics``, ``layers``
(SimpleRNN, LSTM, GRU with explicit forward/backward), ``model``, ``estimator``, ``contrib``,
``export``, ``checkpoint``, ``datasets``, ``kernels`` (the Numba kernels and the NumPy reference),
``sklearn`` (SequenceClassifier, SequenceRegressor; scikit-learn optional), ``onnx_export``,
``summary`` (TensorBoard), ``cli`` and ``datafiles`` (the command line and its file readers),
``distributed`` (data-parallel training on MPI), ``cuda`` (training on an NVIDIA GPU).

The training core under the estimators: ``state`` (TrainState), ``step`` (the one training step),
``loop`` (train/evaluate/predict over model_dir), ``hooks``, ``config`` (RunConfig), ``errors``.
"""

import importlib as _importlib

__version__ = "0.1.0"
_SUBMODULES = ("layers", "kernels", "feature_column", "inputs", "heads", "optimizers", "metrics", "model",
               "network", "features", "estimator", "contrib", "export", "checkpoint", "datasets")
_ESTIMATOR_NAMES = {"RNNClassifier": "estimator", "RNNEstimator": "estimator", "RunConfig": "estimator",
                    "WarmStartSettings": "estimator", "load_exported": "export"}
_LAZY_ONLY = ("sklearn", "onnx_export", "summary", "cli", "datafiles", "distributed", "cuda", "serving")
__all__ = ["RNNClassifier", "RNNEstimator", "RunConfig", "WarmStartSettings", "load_exported", *_SUBMODULES,
           *_LAZY_ONLY, "__version__"]


def __dir__():
    """The public names (loaded on first use) besides the module's own attributes."""
    return sorted(set(globals()) | set(__all__))


def __getattr__(name):
    if name in _ESTIMATOR_NAMES:
        return getattr(_importlib.import_module(f"{__name__}.{_ESTIMATOR_NAMES[name]}"), name)
    if name in _SUBMODULES or name in _LAZY_ONLY:
        try:
            return _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.kernels":
                raise
            # kernels/ is installed as minirnn.kernels; a checkout's own minirnn/ folder lacks it
            raise ImportError(
                f"minirnn was imported from {__path__[0]}, a source checkout, where minirnn.kernels "
                "does not exist until installed: run `python3 -m pip install .` and start Python "
                "outside the checkout, or with `python3 -P` (Python >= 3.11) so that the current folder "
                "is not on sys.path") from error
    raise AttributeError(f"module 'minirnn' has no attribute {name!r}")
