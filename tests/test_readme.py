"""README.md is the newcomer's page: its command line reference must be what `--help` says."""

from __future__ import annotations

from tests import cli_reference


def test_the_cli_reference_in_the_readme_is_the_help_of_every_command() -> None:
    text = cli_reference.README.read_text(encoding="utf-8")
    found = cli_reference.current(text)
    assert found is not None, "README.md lost the CLI reference's markers"
    assert found == cli_reference.render(), (
        "README.md's CLI reference is stale: python -m tests.cli_reference --write"
    )


def test_the_reference_holds_every_command_and_subcommand() -> None:
    from cim.cli import cli

    block = cli_reference.render()
    for name in cli.commands:
        assert f"#### `cim {name}`" in block
    assert "#### `cim demo generate`" in block and "#### `cim token create`" in block
