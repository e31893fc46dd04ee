"""oned in Python: a wire-compatible replacement for OpenNebula's core daemon."""

__all__ = ["__version__"]

__version__ = "7.4.0"
