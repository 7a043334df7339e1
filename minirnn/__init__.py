"""minirnn: recurrent sequence models on NumPy + Numba.

``import minirnn`` is cheap: submodules load on first use and nothing is compiled until a kernel
first runs (compiled kernels are cached on disk for the next process).

Submodules: ``minirnn.layers`` (SimpleRNN, LSTM, GRU with explicit forward/backward),
``minirnn.kernels`` (the Numba kernels and the NumPy reference).
"""

import importlib

__version__ = "0.1.0"
__all__ = ["layers", "kernels", "__version__"]


def __getattr__(name):
    if name in ("layers", "kernels"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'minirnn' has no attribute {name!r}")
