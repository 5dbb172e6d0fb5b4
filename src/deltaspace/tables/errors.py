"""Errors of the tables layer; each message names the file, table or column at fault."""

from __future__ import annotations


class TablesError(ValueError):
    """Base class: anything the ``deltaspace tables`` command reports and exits on."""


class TableSpecError(TablesError):
    """A spec file is malformed, or a table id or paper name is unknown."""


class ResultsError(TablesError):
    """Result files are missing or are not result files."""
