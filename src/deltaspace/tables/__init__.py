"""Paper tables as data: specs (``specs/*.yaml``) compiled against result Parquet files.

See ``docs/tables.md`` for how specs work and the rules for selecting runs and relative numbers.
"""

from .compile import CompiledTable, compile_table, load_results
from .errors import ResultsError, TablesError, TableSpecError
from .spec import AVG, TableSpec, load_specs, select_specs
from .write import write_table

__all__ = [
    "AVG",
    "CompiledTable",
    "ResultsError",
    "TableSpec",
    "TableSpecError",
    "TablesError",
    "compile_table",
    "load_results",
    "load_specs",
    "select_specs",
    "write_table",
]
