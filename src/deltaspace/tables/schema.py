"""JSON schema of a table-spec file (``specs/*.yaml``).

Kept as Python data rather than a file beside the specs so that the schema always travels with the
code that interprets it. Structural mistakes (an unknown key, a wrong type, a kind that lacks what
it needs) are caught here; cross-references (published keys that name no row, merge conflicts
between selectors) are checked in :mod:`deltaspace.tables.spec`.
"""

from __future__ import annotations

from .select import SPREAD_OF_AVERAGE
from .select import STATISTICS as _STATISTIC_FUNCTIONS

KINDS = ("absolute", "relative", "relative_optimization", "relative_transfer", "transfer_matrix", "task_transfer",
         "series", "task_mean")
STATISTICS = tuple(_STATISTIC_FUNCTIONS)
SPREADS = tuple(SPREAD_OF_AVERAGE)  # a spread must say how an Avg cell's spread follows
FIGURES = ("heatmap", "lines", "curves", "group_lines")

_SCALAR = {"type": ["string", "number", "boolean", "null"]}

# A selector picks result rows: column -> value, or a list of values (any of them). null matches a
# missing value, so stage-0 rows that carry no ``setting`` can be selected explicitly.
_SELECTOR = {
    "type": "object",
    "propertyNames": {"pattern": "^[a-z_][a-z0-9_]*$"},
    "additionalProperties": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR, "minItems": 1}]},
}

# a result column or arithmetic over result columns (deltaspace.tables.values)
_VALUE = {"type": ["string", "number"]}
_COLUMN_NAME = {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"}

_AXIS = {
    "type": "object",
    "required": ["key"],
    "additionalProperties": False,
    "properties": {
        "key": {"type": ["string", "number"]},
        "label": {"type": "string"},
        "group": {"type": "string"},
        "match": {"$ref": "#/$defs/selector"},
        "tasks_from": {"$ref": "#/$defs/selector"},
        "value": _VALUE,
        "statistic": {"enum": list(STATISTICS)},
        "decimals": {"type": "integer", "minimum": 0, "maximum": 4},
    },
}

_PUBLISHED = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": {"type": ["number", "null"]},
    },
}

_TABLE = {
    "type": "object",
    "required": ["id", "title", "kind"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "title": {"type": "string"},
        "caption": {"type": "string"},
        "notes": {"type": "string"},
        "kind": {"enum": list(KINDS)},
        "statistic": {"enum": list(STATISTICS)},
        "spread": {"enum": list(SPREADS)},
        "value": _VALUE,
        "figure": {"enum": list(FIGURES)},
        "figure_panels": {"type": "object", "minProperties": 1,
                          "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "measured": {"type": "boolean"},
        "decimals": {"type": "integer", "minimum": 0, "maximum": 4},
        "select": {"$ref": "#/$defs/selector"},
        "reference": {
            "type": "object",
            "required": ["select"],
            "additionalProperties": False,
            "properties": {
                "select": {"$ref": "#/$defs/selector"},
                "on": {"type": "object", "additionalProperties": {"type": "string"}},
                "statistic": {"enum": list(STATISTICS)},
                "value": _VALUE,
            },
        },
        "diagonal": {"$ref": "#/$defs/selector"},
        "param": {"type": "string"},
        "values": {"anyOf": [{"const": "auto"}, {"type": "array", "items": {"type": "number"}, "minItems": 1}]},
        "row_header": {"type": "string"},
        "row_group_label": {"type": "string"},
        "rows": {"anyOf": [{"const": "auto"}, {"type": "array", "items": {"$ref": "#/$defs/axis"}, "minItems": 1}]},
        "columns": {"anyOf": [{"const": "auto"}, {"type": "array", "items": {"$ref": "#/$defs/axis"}, "minItems": 1}]},
        "row_axis": _COLUMN_NAME,
        "column_axis": _COLUMN_NAME,
        "row_groups": _COLUMN_NAME,
        "footer_rows": {"type": "array", "items": {"$ref": "#/$defs/axis"}, "minItems": 1},
        "avg_row": {"type": "boolean"},
        "avg_column": {"type": "boolean"},
        "avg_label": {"type": "string"},
        "published": {"$ref": "#/$defs/published"},
        "published_spread": {"$ref": "#/$defs/published"},
        "published_avg_inconsistent": {
            "type": "array",
            "items": {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 2, "maxItems": 2},
        },
    },
    "allOf": [
        # relative tables need a denominator; absolute ones must not pretend to have one
        {"if": {"properties": {"kind": {"enum": ["relative", "relative_optimization", "relative_transfer",
                                                 "task_transfer"]}}},
         "then": {"required": ["reference"]}},
        {"if": {"properties": {"kind": {"const": "absolute"}}},
         "then": {"not": {"required": ["reference"]}}},
        # a series sweeps one result column; every other kind names its columns
        {"if": {"properties": {"kind": {"const": "series"}}},
         "then": {"required": ["param", "values", "rows"], "not": {"required": ["columns"]}},
         "else": {"required": ["columns", "rows"], "not": {"anyOf": [{"required": ["param"]},
                                                                     {"required": ["values"]}]}}},
        {"if": {"not": {"properties": {"kind": {"enum": ["transfer_matrix", "task_transfer"]}}}},
         "then": {"not": {"required": ["diagonal"]}}},
        {"if": {"required": ["published_spread"]}, "then": {"required": ["spread"]}},
    ],
}

SPEC_FILE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["paper", "title", "tables"],
    "additionalProperties": False,
    "properties": {
        "paper": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "title": {"type": "string"},
        "notes": {"type": "string"},
        "tables": {"type": "array", "items": {"$ref": "#/$defs/table"}, "minItems": 1},
    },
    "$defs": {"selector": _SELECTOR, "axis": _AXIS, "published": _PUBLISHED, "table": _TABLE},
}
