"""The ``anatomix`` command: parses arguments, loads config, calls one library function.

Each command lives in its own section below; the library does the work. ``fit``, ``validate``,
``test`` and ``predict`` are handed to LightningCLI (see ``anatomix.train.cli``).
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="anatomix",
    help="Synthetic, fully labelled 3D volumes with correct anatomy, for segmentation pre-training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bank_app = typer.Typer(help="Inspect shape banks.", no_args_is_help=True)
graph_app = typer.Typer(help="Learn, check and draw organ graphs.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")
app.add_typer(graph_app, name="graph")

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def fail(message: str, code: int = 1) -> None:
    """Print an error in red on stderr and exit non-zero."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# ---- ingest-masks / bank (shape bank) ------------------------------------------------------

# ---- graph (organ graph) --------------------------------------------------------------------

# ---- synth / preview (synthesis) -------------------------------------------------------------

# ---- evaluate (anatomical realism) ----------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    if len(sys.argv) > 1 and sys.argv[1] in LIGHTNING_COMMANDS:
        from anatomix.train.cli import lightning_main

        lightning_main(sys.argv[1:])
        return
    app()


if __name__ == "__main__":
    main()
