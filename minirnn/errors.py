"""Errors that several layers of minirnn raise (kept here so that none imports a facade for them)."""

__all__ = ["NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """evaluate/predict/export before any checkpoint exists (TF1 and scikit-learn's name)."""
