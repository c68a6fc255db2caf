"""``synergraph``: train, evaluate and inspect recommenders from the shell.

The CLI only parses, validates and prints; all work happens in ``dgl_synergraph``. Every
expected failure (bad flag, bad file, bad run directory) ends with one ``Error: ...`` line on
stderr and a non-zero exit code.
"""

from __future__ import annotations

import json
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
    logger = logging.getLogger("synergraph")
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    logging.getLogger("dgl_synergraph").setLevel(logging.WARNING if quiet else logging.INFO)
    if not logging.getLogger("dgl_synergraph").handlers:
        logging.getLogger("dgl_synergraph").addHandler(logger.handlers[0])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="synergraph")
def app() -> None:
    """Graph-based multimodal recommendation: SynerGraph, SIGER and baselines on DGL."""


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one error line, no traceback, for every expected failure."""
    try:
        app.main(args=argv, prog_name="synergraph", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err))
        sys.exit(0)
    except click.UsageError as err:
        hint = f" (see 'synergraph {err.ctx.info_name} --help')" if err.ctx and err.ctx.parent else ""
        _fail(f"{err.format_message()}{hint}", 2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.Abort:
        _fail("interrupted", 130)
    except KeyboardInterrupt:
        _fail("interrupted (the last checkpoint is kept; continue with --resume RUN_DIR)", 130)
    except SynergraphError as err:
        _fail(str(err), 1)
    except click.ClickException as err:
        _fail(err.format_message(), err.exit_code)


from cli import commands  # noqa: E402,F401  (registers the subcommands on ``app``)
