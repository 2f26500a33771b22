"""Command lines from config dataclasses, every value parsed and checked before any work.

A script declares its settings as a frozen dataclass of `option` fields and calls `parse`: a
bad value, unknown flag or failed `check` is refused with one line on stderr (``error:
--epochs: must be an integer >= 1, got '0'``) and exit status 2 before anything else runs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import math
import shlex
import sys
import textwrap
from typing import Any, Callable, NoReturn, Sequence, TypeVar

__all__ = ["command", "ints", "names", "nonnegative_int", "number", "numbers", "option",
           "parse", "positive_int", "positive_number", "rates", "seeds", "to_dict"]

T = TypeVar("T")
_KEY = "experiments.cli"  # the dataclass field metadata key of an option
_Option = collections.namedtuple("_Option", "help parse quick choices metavar flag")


def _int_at_least(low: int) -> Callable[[str], int]:
  """A parse function for an integer ``>= low``."""
  def parse_int(text: str) -> int:
    with contextlib.suppress(ValueError):
      if int(text) >= low:
        return int(text)
    raise ValueError(f"must be an integer >= {low}")
  parse_int.metavar = "N"
  return parse_int


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
  if low is not None and high is not None:
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
  if low is not None:
    return f" {'>' if low_open else '>='} {low:g}"
  return "" if high is None else f" {'<' if high_open else '<='} {high:g}"


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], float]:
  """A parse function for a finite number in a range (nan and inf are always refused).

  Args:
    low, high: the smallest and the largest allowed value; None: no bound.
    low_open, high_open: refuse the bound itself (``> low`` instead of ``>= low``).
  """
  bounds = _bounds(low, high, low_open, high_open)
  def parse_number(text: str) -> float:
    value = math.nan
    with contextlib.suppress(ValueError):
      value = float(text)
    if not (math.isfinite(value)
            and (low is None or value > low or (value == low and not low_open))
            and (high is None or value < high or (value == high and not high_open))):
      raise ValueError("must be a finite number" + bounds)
    return value
  parse_number.metavar = "X"
  return parse_number


def _list(text: str, item: Callable[[str], Any], must: str, *, empty: bool = False,
          distinct: bool = True) -> tuple:
  """Comma-separated non-empty items, each parsed by `item`; a trailing comma is ignored."""
  parts = [part.strip() for part in text.split(",")] if text.strip() else []
  if len(parts) > 1 and not parts[-1]:
    parts.pop()
  try:
    values = tuple(item(part) for part in parts)
  except ValueError:
    raise ValueError(must) from None
  if (not all(parts) or (not values and not empty)
      or (distinct and len(set(values)) != len(values))):
    raise ValueError(must)
  return values


def ints(text: str) -> tuple[int, ...]:
  """``"512,512"`` -> ``(512, 512)``; ``""`` -> ``()`` (hidden widths: a linear model)."""
  return _list(text, int, "must be comma-separated integers", empty=True, distinct=False)


def seeds(text: str) -> tuple[int, ...]:
  """``"3"`` -> seeds ``(0, 1, 2)``; ``"0,5,7"`` -> those (``"7,"``: seed 7 alone)."""
  must = "must be a count >= 1 or distinct comma-separated integers >= 0"
  if "," in text:
    return _list(text, nonnegative_int, must)
  with contextlib.suppress(ValueError):
    return tuple(range(positive_int(text)))
  raise ValueError(must)


def numbers(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], tuple[float, ...]]:
  """A parse function for distinct comma-separated numbers (at least one), each as `number`."""
  item = number(low, high, low_open=low_open, high_open=high_open)
  bounds = _bounds(low, high, low_open, high_open)
  def parse_numbers(text: str) -> tuple[float, ...]:
    return _list(text, item, "must be distinct comma-separated finite numbers" + bounds)
  parse_numbers.metavar = "LIST"
  return parse_numbers


def names(text: str) -> tuple[str, ...]:
  """``"a, b"`` -> ``("a", "b")``: at least one, distinct, none empty."""
  return _list(text, str, "must be distinct comma-separated non-empty names")


positive_int = _int_at_least(1)  # an integer >= 1 (epochs, a batch size): "0" is refused
nonnegative_int = _int_at_least(0)  # an integer >= 0
positive_number = number(0.0, low_open=True)  # a finite number > 0
rates = numbers(0.0, low_open=True)  # a learning-rate grid
ints.metavar = names.metavar = "LIST"
seeds.metavar = "N|LIST"


def option(default: Any, help: str,  # pylint: disable=redefined-builtin
           *, parse: Callable[[str], Any] | None = None, quick: Any = dataclasses.MISSING,
           choices: Sequence[Any] | None = None, metavar: str | None = None,
           flag: str | None = None) -> Any:
  """A dataclass field that `parse` turns into a command-line flag.

  Args:
    default: the value without the flag (not parsed). TypeError unless it is False for a
      bool option (a flag that turns something on), or a str or None, or `parse` is given.
    help: what the option is; `parse` appends the default and the quick value.
    parse: text -> value, raising ValueError("must be ..."); None keeps the text (a str).
    quick: the value under ``--quick`` unless the flag is given (not parsed); default: `default`.
    choices: the allowed values (after `parse`).
    metavar: the value's name in ``--help``; default: the parse function's ``metavar``.
    flag: the flag, e.g. ``"--lr"``; default: ``--`` and the field name, ``_`` -> ``-``.
  """
  if default is True or (parse is None and not isinstance(default, (str, bool, type(None)))):
    raise TypeError(f"option({default!r}, {help!r}): a bool default must be False and "
                    "a default other than a str or None needs parse=")
  return dataclasses.field(default=default, metadata={_KEY: _Option(
      help, parse, quick, None if choices is None else tuple(choices), metavar, flag)})


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:
    print("error: " + " ".join(str(message).splitlines()), file=sys.stderr)
    raise SystemExit(2)


class _Formatter(argparse.HelpFormatter):
  def _split_lines(self, text: str, width: int) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # keep flags whole


def _show(value: Any) -> str:
  if isinstance(value, bool):
    return "on" if value else "off"
  if isinstance(value, tuple):
    return ",".join(map(_show, value)) or '""'
  return "none" if value is None else str(value)


def parse(cls: type[T], argv: Sequence[str] | None = None, *, prog: str, description: str,
          check: Callable[[T], Sequence[str]] | None = None) -> T:
  """Parses `argv` (default ``sys.argv[1:]``) into a `cls` instance, or exits.

  Args:
    cls: a dataclass of `option` fields, plus ``quick: bool = False`` for ``--quick``.
    argv: the arguments, without the program name.
    prog: how the script is run, e.g. ``"python -m experiments.zoo"``.
    description: the ``--help`` description.
    check: cross-field rules: config -> error messages; the first one is refused.

  Raises:
    SystemExit: 0 after ``--help``; 2 after printing one ``error: ...`` line on stderr.
    TypeError: a field is neither an `option` nor ``quick``, or quick values lack ``quick``.
  """
  fields = {f.name: f for f in dataclasses.fields(cls)}
  has_quick = fields.pop("quick", None) is not None
  if any(_KEY not in f.metadata for f in fields.values()):
    raise TypeError(f"{cls.__name__}: every field but quick must be a cli.option")
  options = {name: f.metadata[_KEY] for name, f in fields.items()}
  flags = {name: opt.flag or "--" + name.replace("_", "-") for name, opt in options.items()}
  changes = []
  parser = _Parser(prog=prog, description=description, allow_abbrev=False,
                   argument_default=argparse.SUPPRESS, formatter_class=_Formatter)
  for name, opt in options.items():
    default, is_bool = fields[name].default, isinstance(fields[name].default, bool)
    notes = [] if is_bool or "(default " in opt.help else [f"default: {_show(default)}"]
    if opt.quick is not dataclasses.MISSING:
      notes.append(f"--quick: {_show(opt.quick)}")
      changes.append(flags[name] if opt.quick is True else f"{flags[name]} {_show(opt.quick)}")
    text = (f"{opt.help} ({'; '.join(notes)})" if notes else opt.help).replace("%", "%%")
    if is_bool:
      parser.add_argument(flags[name], dest=name, action="store_true", help=text)
    else:
      metavar = opt.metavar or ("{" + ",".join(map(str, opt.choices)) + "}" if opt.choices
                                else getattr(opt.parse, "metavar", "TEXT"))
      parser.add_argument(flags[name], dest=name, metavar=metavar, help=text)
  if changes and not has_quick:
    raise TypeError(f"{cls.__name__}: options have quick values but there is no quick field")
  if has_quick:
    parser.add_argument("--quick", action="store_true",
                        help="a tiny configuration for tests and smoke runs: "
                             + ("; ".join(changes) or "no option changes") + " (each unless given)")
  given = vars(parser.parse_args(argv))
  quick = given.pop("quick", False)
  values = {"quick": quick} if has_quick else {}
  for name, opt in options.items():
    if name in given:
      values[name] = _value(parser, flags[name], opt, given[name])
    elif quick and opt.quick is not dataclasses.MISSING:
      values[name] = opt.quick
  config = cls(**values)
  if check and (problems := list(check(config))):
    parser.error(problems[0])
  return config


def _value(parser: _Parser, flag: str, opt: _Option, text: Any) -> Any:
  if text is True:  # a bool flag
    return True
  try:
    value = text if opt.parse is None else opt.parse(text)
  except ValueError as e:
    parser.error(f"{flag}: {e}, got {text!r}")
  if opt.choices is not None and value not in opt.choices:
    parser.error(f"{flag}: must be one of {', '.join(map(str, opt.choices))}, got {text!r}")
  return value


def to_dict(config: Any) -> dict[str, Any]:
  """The fields of `config` for config.json: tuples become lists."""
  def plain(value):
    return [plain(v) for v in value] if isinstance(value, (tuple, list)) else value
  return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def command(prog: str, argv: Sequence[str] | None = None) -> str:
  """The command line to rerun: `prog` and `argv` (default ``sys.argv[1:]``) shell-quoted."""
  args = shlex.join(sys.argv[1:] if argv is None else argv)
  return f"{prog} {args}" if args else prog
