"""Errors that several layers of minirnn raise (kept here so that none imports a facade for them)."""

__all__ = ["NotFittedError", "install_hint"]


def install_hint(extra, packages):
    """How to install an optional part: its extra from the minirnn checkout (minirnn is not on a
    package index), or its packages directly."""
    return f"pip install \".[{extra}]\" in the minirnn checkout, or pip install {packages}"


class NotFittedError(ValueError, AttributeError):
    """evaluate/predict/export before any checkpoint exists (TF1 and scikit-learn's name)."""
