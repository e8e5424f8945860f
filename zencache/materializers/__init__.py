"""Materializers: values to files and back (see base.py); built-ins load lazily."""

from .base import BaseMaterializer

__all__ = ["BaseMaterializer"]
