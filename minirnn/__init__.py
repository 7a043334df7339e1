"""minirnn: recurrent sequence models on NumPy + Numba."""
__version__ = "0.1.0"
