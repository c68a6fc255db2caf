"""``synergraph``: train, evaluate and inspect recommenders from the shell.

The CLI only parses, validates and prints; all work happens in ``dgl_synergraph``. Every
expected failure (bad flag, bad file, bad run directory) ends with one ``Error: ...`` line on
stderr and a non-zero exit code.
"""

from __future__ import annotations

import logging
import sys

import click
from tqdm.auto import tqdm

from dgl_synergraph.errors import SynergraphError


class _TqdmHandler(logging.Handler):
    """Log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def _setup_logging(quiet: bool) -> None:
    """The library's log lines go to stderr through tqdm (INFO, or WARNING with --quiet); run
    directories add their own file handler at INFO."""
    logger = logging.getLogger("dgl_synergraph")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = next((h for h in logger.handlers if isinstance(h, _TqdmHandler)), None)
    if handler is None:
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


class SynergraphGroup(click.Group):
    """A Click group whose every expected failure ends in one ``Error:`` line, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args=args, prog_name=prog_name or "synergraph", complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx else str(err))
            sys.exit(0)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx and err.ctx.parent else ""
            _fail(f"{err.format_message()}{hint}", 2)
        except click.exceptions.Exit as err:
            sys.exit(err.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except SynergraphError as err:
            _fail(str(err), getattr(err, "exit_code", 1))
        except click.ClickException as err:
            _fail(err.format_message(), err.exit_code)


@click.group(cls=SynergraphGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="synergraph")
def app() -> None:
    """Graph-based multimodal recommendation: SynerGraph, SIGER and baselines on DGL."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    app.main(args=argv)


from cli import commands  # noqa: E402,F401  (registers the subcommands on ``app``)

if __name__ == "__main__":  # python -m cli.main: what torchrun starts for data-parallel training
    from cli.main import main as entry  # the module the subcommands registered on, not this __main__
    from dgl_synergraph.training.distributed import exit_rank

    try:
        entry()
    except SystemExit as done:
        exit_rank(done.code)  # a data-parallel rank leaves here, past gloo's teardown
        raise
