"""The ``stagecache`` command (:func:`main`); the library underneath never prints and never exits."""

from .main import main

__all__ = ["main"]
