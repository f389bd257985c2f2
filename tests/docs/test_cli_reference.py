# ---------------------------------------------------------------------------------------------
# docs/cli.md is what the commands print: the page equals what pcdsl.cli.reference writes from
# them (run `python -m pcdsl.cli.reference` after changing a command), and every command of the
# CLI has its section, with each of its options.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import click

from pcdsl.cli.main import main
from pcdsl.cli.reference import TARGET, reference_text


def test_the_page_is_the_one_the_commands_write():
    assert TARGET.read_text(encoding="utf-8") == reference_text(), \
        "docs/cli.md is out of date: run `python -m pcdsl.cli.reference`"


def test_every_command_and_option_is_on_the_page():
    text = TARGET.read_text(encoding="utf-8")
    context = click.Context(main, info_name="pcdsl")
    for name in main.list_commands(context):
        assert f"## pcdsl {name}\n" in text
        section = text.split(f"## pcdsl {name}\n", 1)[1].split("\n## ", 1)[0]
        for parameter in main.get_command(context, name).params:
            for option in parameter.opts if isinstance(parameter, click.Option) else ():
                assert option in section, f"{option} of pcdsl {name}"
