"""The ``kernelspec`` command line.

Each command is a module of this package with ``HELP`` (and optionally ``DESCRIPTION``),
``add_parser(parser)`` and ``run(args) -> int``; :data:`COMMANDS` lists them in the order
``--help`` shows them. A user's mistake ends with exit status 2 and one line
``kernelspec: error: ...`` on stderr that says what to do; it never shows a traceback.
Every error and warning goes through `printable`, so a file or layer name with a newline or
an escape code can neither forge a second line nor drive the terminal, and through `redact`,
so that credentials in a URL are never shown. Output into a pipe that closes early
(``kernelspec models --all | head``) ends quietly with status 141, as if by SIGPIPE.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from importlib import import_module

from ..base.atomic import Interrupted
from ..base.errors import KernelSpecError
from ..base.text import printable, redact
from ._common import EXIT_USAGE, PROG, Parser

__all__ = ["COMMANDS", "build_parser", "main"]

#: Exit status when the reader of stdout went away (128 + SIGPIPE, as a shell reports it).
EXIT_BROKEN_PIPE = 141

#: Command name -> module of this package that implements it.
COMMANDS: dict[str, str] = {
    "models": "models",
    "analyze": "analyze",
    "report": "report",
    "maps": "maps",
    "patches": "patches",
    "explain": "explain",
    "synthesize": "synthesize",
    "adversarial": "adversarial",
    "scan": "scan",
    "dataset": "dataset",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``kernelspec`` argument parser."""
    from .. import __version__

    parser = Parser(
        prog=PROG,
        description="What the convolutional filters of a CNN have learned: kernels, "
        "frequency responses, clusters of similar filters and redundant filters.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = import_module(f".{module_name}", __name__)
        command = sub.add_parser(
            name, help=module.HELP, description=getattr(module, "DESCRIPTION", None)
        )
        module.add_parser(command)
        command.set_defaults(_run=module.run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    phrase = getattr(message, "line", None)  # UntrainedWeightsWarning: say it in CLI syntax
    text = phrase("--weights random") if callable(phrase) else str(message)
    sys.stderr.write(f"{PROG}: warning: {printable(redact(text))}\n")


class _OneLineFormatter(logging.Formatter):
    """Log records as ``kernelspec: message``, control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {printable(redact(record.getMessage()))}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kernelspec`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    # Our own notes at INFO; other libraries' only from WARNING (httpx logs every request at
    # INFO), and huggingface_hub's retry warnings not at all: the error line says it all.
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("napari_kernelspec").setLevel(logging.INFO)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            code = args._run(args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        except KernelSpecError as exc:
            # The core names Python's spelling; on the command line it is the option.
            text = printable(redact(exc)).replace("weights='random'", "--weights random")
            sys.stderr.write(f"{PROG}: error: {text}\n")
            return EXIT_USAGE
        except Interrupted as exc:  # Ctrl-C between the renames of files written together
            sys.stderr.write(f"{PROG}: interrupted; {printable(redact(exc))}\n")
            return 130
        except KeyboardInterrupt:
            sys.stderr.write(f"{PROG}: interrupted; nothing was written\n")
            return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it at exit, which would fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass
