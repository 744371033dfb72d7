"""`cim token`: API tokens for `cim serve` (uploads and job control need one)."""

from __future__ import annotations

import click

from cim.cli.base import emit_json, json_option, open_store, out_console


@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command()
@click.option("--role", type=click.Choice(["operator", "designer"]), required=True)
@click.option("--name", required=True, help="Who or what uses the token.")
@json_option("Print the token as JSON.")
@click.pass_context
def create(ctx: click.Context, role: str, name: str, as_json: bool) -> None:
    """Make a token and print it once (the store keeps only its hash)."""
    from cim.tokens import create_token

    with open_store(ctx) as store:
        made, secret = create_token(store, role, name)
    if as_json:
        emit_json({"id": made.id, "name": made.name, "role": made.role, "token": secret})
    else:
        click.echo(secret)
        click.echo(
            f"token {made.id} ({made.role}, {made.name}): shown once, keep it safe", err=True
        )


@token.command("list")
@json_option("Print the tokens as JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """The tokens (never their secrets)."""
    from rich.table import Table

    from cim.tokens import list_tokens

    with open_store(ctx) as store:
        rows = list_tokens(store)
    if as_json:
        emit_json({"tokens": rows})
        return
    table = Table("id", "name", "role", "created", "revoked")
    for r in rows:
        table.add_row(
            *(str(r[k] or "") for k in ("id", "name", "role", "created_at", "revoked_at"))
        )
    out_console.print(table)


@token.command()
@click.argument("token_id", type=int)
@click.pass_context
def revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token by its id."""
    from cim.tokens import revoke_token

    with open_store(ctx) as store:
        revoke_token(store, token_id)
    click.echo(f"token {token_id} revoked")
