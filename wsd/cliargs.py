"""What both command lines share: a parser that answers a bad argument in one line (exit 2), the
argument types that check a value before any browser, build or server starts, and `--version`.

argparse's own `error` prints the usage block too: a user with a typo reads two screens to find
the one line that matters, so `OneLineParser` prints just that line.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

USAGE_ERROR = 2  # argparse's and pytest's code for "the command was called wrongly"


def shown(value) -> str:
    """A value as an error line shows it: as typed, or quoted where it would break the line."""
    text = str(value)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


class UsageError(Exception):
    """A bad value of a flag, found after parsing (against a dist's manifest, say): exit 2."""

    def __init__(self, flag: str, value, accepted: str):
        super().__init__(f"{flag} {shown(value)}: {accepted}")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def parser(prog: str, description: str) -> OneLineParser:
    """A parser whose subparsers answer in one line too, with `--version`."""
    p = OneLineParser(prog=prog, description=description)
    p.add_argument("--version", action=VersionAction, help="versions of wsd, TVM, torch, diffusers and the web runtime")
    return p


def subparsers(p: argparse.ArgumentParser):
    return p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)


def port(text: str) -> int:
    value = whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{shown(text)}: a port is a whole number from 0 to 65535")
    return value


def positive_int(text: str) -> int:
    value = whole(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{shown(text)}: must be a whole number above 0")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{shown(text)}: must be a number of seconds above 0")
    return value


def number(text: str) -> float:
    """Any float, NaN and infinities included: the range is the dist's to judge (the page's checks)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)}: not a number") from None


def whole(text: str) -> int:
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)}: not a whole number") from None


def writable_file(flag: str, path: Path) -> Path:
    """A file the command may write: refused now rather than after minutes of work."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(flag, path, "is a folder; give a file name (e.g. image.png)")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise UsageError(flag, path, f"cannot be created ({parent} is not a folder)")
    try:  # a real write: permission bits say yes to root in places no file can be made (/proc)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise UsageError(flag, path, f"cannot be written in {parent} ({exc.strerror or exc})") from None
    return path


def existing_file(flag: str, path: Path) -> Path:
    if not Path(path).is_file():
        raise UsageError(flag, path, "no such file")
    return Path(path)


class VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text(parser.prog))
        parser.exit(0)


def version_text(prog: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from wsd import versions

    try:
        own = version("wsd")
    except PackageNotFoundError:
        own = "unknown (not installed)"
    found = versions.collect()
    libs = ", ".join(
        f"{k} {found.get(k) or 'missing'}" for k in ("tvm", "tvm_ffi", "torch", "diffusers", "transformers")
    )
    try:
        from wsd.webrt.kit import kit_key

        kit = kit_key()[:16]
    except Exception as exc:  # noqa: BLE001 (no TVM sources: say so, do not fail --version)
        kit = f"unavailable ({type(exc).__name__})"
    return f"{prog} {own} (Python {sys.version.split()[0]}; {libs}; web runtime key {kit})"
