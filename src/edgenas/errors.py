"""Errors edgenas raises for bad input: each names the input at fault and what to do."""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "EdgenasError", "GenotypeError"]


class EdgenasError(Exception):
    """Base class of every error meant for the user (the CLI prints it without a traceback)."""


class DataError(EdgenasError):
    """The data given (folder, CSV manifest, images) cannot be used as it is."""


class GenotypeError(EdgenasError, ValueError):
    """An architecture string or gene is malformed or describes an impossible network."""


class ConfigError(EdgenasError, ValueError):
    """A command-line option or configuration value is not understood."""
