"""`deltaspace`'s command table: every registered command is listed with its module, and a run of
one command imports only that module."""

import subprocess
import sys

from deltaspace.cli import COMMANDS, build_parser, main


def registered(parser) -> list[str]:
    return list(parser._subparsers._group_actions[0].choices)


def test_command_table_names_every_registered_command_in_order():
    assert registered(build_parser()) == list(COMMANDS)


def test_one_command_registers_only_its_module():
    assert registered(build_parser("tables")) == ["tables"]
    assert registered(build_parser("prepare")) == ["tasks", "prepare"]
    assert main(["tables", "list"]) == 0


def test_a_tables_run_does_not_import_torch():
    code = ("import sys; from deltaspace.cli import main; main(['tables', 'list']); "
            "print('torch' in sys.modules, 'seaborn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
