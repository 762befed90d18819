"""What every command-line tool of the project does the same way.

`run(main, module=...)` replaces `absl.app.run(main)` in each tool's `run_main`:

- `--help` shows the tool's own description and flags. absl lists the "key
  flags" of the program's main module, found by `sys.argv[0]`; a console
  script's main module is a generated stub that defines none, so without this
  `dfd-train --help` would print only a usage line. `--helpfull` lists all.
- `~` in path flags and positional paths is expanded (local paths only). Bash
  does not expand `~` after `--flag=`, so without this `--model_dir=~/runs/r1`
  would reach the tool literally and create a folder named `~` in the working
  directory.
- `--help`/`--helpfull` exit with status 0, as help does in most tools (absl
  ends them with 1, which reads as a failure in scripts and CI logs).
- A user error (a bad value, a missing file, no permission) ends the tool with
  one line on stderr that names the cause and the fix, exit status 1, and no
  traceback; `--verbosity=1` (or `-v 1`) shows the traceback too.

Pure Python and absl: importing it costs nothing, so a tool that does not need
TensorFlow (`dfd-synthetic`) does not load it for `--help`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
import os
import sys
import traceback
from types import ModuleType

from absl import app, flags, logging

FLAGS = flags.FLAGS


class UserError(Exception):
    """A failure the user can fix; the message says what happened and what to do."""


# Exceptions that mean "the input or the configuration is wrong", not "the code is wrong".
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    app.UsageError,  # A missing or contradictory flag: the same one line as every other error.
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def expand_user(path: str) -> str:
    """`~` and `~user` expanded in a local path; URLs (gs://...) and other values unchanged."""
    if isinstance(path, str) and path.startswith("~"):
        return os.path.expanduser(path)
    return path


def one_line(error: BaseException) -> str:
    """The error's message on one line (log files and terminals read it the same)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def require_positive_finite(name: str, flag_values: flags.FlagValues = FLAGS) -> None:
    """Registers an absl validator: flag `name` is unset or a finite number > 0.

    absl parses `inf` and `nan` as floats; without this they reach the tool's work
    (a ZeroDivisionError, "cannot convert float NaN to integer") instead of failing
    at start-up with one line that names the flag.
    """
    flags.register_validator(
        name,
        lambda value: value is None or (math.isfinite(value) and value > 0),
        message=f"--{name} must be a finite number > 0 (e.g. --{name}=2), or left unset",
        flag_values=flag_values,
    )


def _adopt_key_flags(module: ModuleType) -> None:
    """Makes `module`'s flags, and its docstring, what absl's `--help` shows."""
    main_key = sys.argv[0]
    if module.__name__ != "__main__":
        for flag in FLAGS.get_key_flags_for_module(module.__name__):
            FLAGS.register_key_flag_for_module(main_key, flag)
    main_module = sys.modules.get("__main__")
    if main_module is not None and module.__doc__ and not main_module.__doc__:
        main_module.__doc__ = module.__doc__


def _expand_key_path_flags(module: ModuleType) -> None:
    """Expands `~` in every string or list flag of the tool that starts with it."""
    names = {flag.name for flag in FLAGS.get_key_flags_for_module(sys.argv[0])}
    if module.__name__ != "__main__":
        names |= {flag.name for flag in FLAGS.get_key_flags_for_module(module.__name__)}
    for name in sorted(names):
        value = FLAGS[name].value
        if isinstance(value, str) and value.startswith("~"):
            FLAGS[name].value = expand_user(value)
        elif isinstance(value, list) and any(
            isinstance(v, str) and v.startswith("~") for v in value
        ):
            FLAGS[name].value = [expand_user(v) for v in value]


_HELP_FLAGS = ("help", "helpshort", "helpfull", "?")


def _asks_for_help(argv: Sequence[str]) -> bool:
    """Whether `argv` holds one of absl's help flags (before a `--` that ends the flags)."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in _HELP_FLAGS and value.lower() not in ("false", "0"):
            return True
    return False


def run(
    main: Callable[[Sequence[str]], int | None],
    *,
    module: ModuleType,
    prog: str | None = None,
    extra_user_errors: tuple[type[BaseException], ...] = (),
) -> None:
    """Runs `main(argv)` the way `absl.app.run` does, with the three behaviours above.

    Args:
        main: the tool's main; receives argv with `~` expanded in positional paths.
        module: the tool's module (its flags and docstring make `--help`).
        prog: the console script's name, used in error lines whether the tool runs as
            a console script or as `python -m` (default: the program's file name).
        extra_user_errors: more exception types to report in one line.
    """
    _adopt_key_flags(module)
    name = prog or os.path.basename(sys.argv[0]).removesuffix(".py")
    user_errors = USER_ERRORS + tuple(extra_user_errors)

    def wrapped(argv: Sequence[str]):
        _expand_key_path_flags(module)
        argv = [argv[0]] + [expand_user(arg) for arg in argv[1:]]
        try:
            return main(argv)
        except user_errors as error:
            if logging.get_verbosity() >= 1:
                raise
            logging.debug("%s", "".join(traceback.format_exception(error)))
            print(f"{name}: error: {one_line(error)}", file=sys.stderr, flush=True)
            sys.exit(1)

    try:
        app.run(wrapped)
    except SystemExit as done:
        # absl prints the help, then exits with 1 before main runs.
        if done.code == 1 and _asks_for_help(sys.argv):
            sys.exit(0)
        raise
