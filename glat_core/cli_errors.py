"""One line and exit code 2 for whatever goes wrong in a command-line tool; --debug for the traceback.

Every CLI's entry point takes it as a decorator (a new tool, such as glat-tag, needs
nothing else):

    @one_line_errors("glat-fit")
    def main(argv=None) -> int: ...

Standard library only: every CLI imports it, the TF-free edge runtime's included.
"""

from __future__ import annotations

import functools
import sys

# What bad paths, files and values raise; anything else is named by its type as well.
EXPECTED = (ValueError, OSError, RuntimeError)


def describe_error(error: BaseException) -> str:
    """The error's message (its first line first), its type too when it is not EXPECTED."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip() or type(error).__name__
    if not isinstance(error, EXPECTED):
        text = f"{type(error).__name__}: {text} (unexpected: --debug shows where)"
    return text


def one_line_errors(prog: str):
    """Wraps `main(argv) -> int`: an exception becomes `prog: error: ...` on stderr and exit
    code 2 (Ctrl-C: `prog: interrupted`, 130); with `--debug` in argv it propagates instead."""
    def decorate(main):
        @functools.wraps(main)
        def run(argv=None):
            argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
            debug = "--debug" in argv
            try:
                return main([a for a in argv if a != "--debug"])
            except KeyboardInterrupt:
                if debug:
                    raise
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except Exception as error:  # noqa: BLE001 - the point: no traceback for users
                if debug:
                    raise
                print(f"{prog}: error: {describe_error(error)}", file=sys.stderr)
                return 2
        return run
    return decorate


def add_debug_flag(parser):
    """Lists --debug in a parser's --help (one_line_errors takes it out of argv first)."""
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the Python traceback instead of one line")
    return parser
