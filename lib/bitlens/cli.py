"""Command-line conventions: every flag shows its help and default, booleans are strict, errors go to stderr
with exit status 2 (argparse's own convention)."""
from __future__ import annotations

import argparse
import sys

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each flag's help; the module docstring kept as written."""


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter)


def strict_bool(text: str) -> bool:
    """`true`/`false` (also 1/0, yes/no, on/off); anything else is an error, not a silent False."""
    t = str(text).strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use one of {', '.join(TRUE + FALSE)}")


def ranged(field, flag: str, key: str = ""):
    """An argparse type that parses a number as a schema `Field` types it and refuses what the schema refuses
    (out of range, NaN, infinite), so a CLI accepts exactly what a profile accepts."""
    import math

    kind = field.type[0] if isinstance(field.type, tuple) else field.type

    def parse(text: str):
        if kind is bool:
            return strict_bool(text)
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number, got {text!r}")
        if field.out_of_range(v):
            raise argparse.ArgumentTypeError(f"{flag} must be {field.range_text()}, got {text}"
                                             + (f" (the range of params key {key})" if key else ""))
        return v
    return parse


def fail(prog: str, message: str) -> int:
    """Print `prog: error: message` on stderr and return 2, as argparse does for its own errors."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
