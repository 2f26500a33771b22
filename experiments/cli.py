"""Command lines from config dataclasses, every value parsed and checked before any work.

A script declares its settings as a frozen dataclass of `option` fields, plus a plain
``quick: bool = False`` field if it has a ``--quick`` mode, and calls `parse`: one
flag per option, ``--help`` with each real default and quick value, and a bad value,
unknown flag or failed `check` refused with one line on stderr (``error: --epochs:
must be an integer >= 1, got '0'``) and exit status 2 before anything else runs.
``--quick`` replaces the default of each option with a quick value unless its flag
was given. A parse function maps text to a value or raises ValueError("must be
..."); its ``metavar`` attribute names the value in ``--help``.
"""

from __future__ import annotations

import argparse
import collections
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


def _refuse(message: str) -> NoReturn:
  print("error: " + " ".join(str(message).splitlines()), file=sys.stderr)
  raise SystemExit(2)


def _int_at_least(text: str, low: int) -> int:
  try:
    if int(text) >= low:
      return int(text)
  except ValueError:
    pass
  raise ValueError(f"must be an integer >= {low}")


def positive_int(text: str) -> int:
  """An integer ``>= 1`` (epochs, a batch size): ``"0"`` is refused."""
  return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
  """An integer ``>= 0``."""
  return _int_at_least(text, 0)


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
    low: the smallest allowed value, or None for no lower bound.
    high: the largest allowed value, or None for no upper bound.
    low_open: refuse `low` itself (``> low`` instead of ``>= low``).
    high_open: refuse `high` itself.
  """
  bounds = _bounds(low, high, low_open, high_open)

  def parse_number(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      value = math.nan
    if not (math.isfinite(value)
            and (low is None or value > low or (value == low and not low_open))
            and (high is None or value < high or (value == high and not high_open))):
      raise ValueError("must be a finite number" + bounds)
    return value
  parse_number.metavar = "X"
  return parse_number


positive_number = number(0.0, low_open=True)  # a finite number > 0


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
  try:
    return tuple(range(positive_int(text)))
  except ValueError:
    raise ValueError(must) from None


def numbers(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], tuple[float, ...]]:
  """A parse function for distinct comma-separated numbers (at least one), each as `number`."""
  item = number(low, high, low_open=low_open, high_open=high_open)
  bounds = _bounds(low, high, low_open, high_open)

  def parse_numbers(text: str) -> tuple[float, ...]:
    return _list(text, item, "must be distinct comma-separated finite numbers" + bounds)
  parse_numbers.metavar = "LIST"
  return parse_numbers


rates = numbers(0.0, low_open=True)  # a learning-rate grid


def names(text: str) -> tuple[str, ...]:
  """``"a, b"`` -> ``("a", "b")``: at least one, distinct, none empty."""
  return _list(text, str, "must be distinct comma-separated non-empty names")


positive_int.metavar = nonnegative_int.metavar = "N"
ints.metavar = names.metavar = "LIST"
seeds.metavar = "N|LIST"


def option(default: Any, help: str,  # pylint: disable=redefined-builtin
           *, parse: Callable[[str], Any] | None = None, quick: Any = dataclasses.MISSING,
           choices: Sequence[Any] | None = None, metavar: str | None = None,
           flag: str | None = None) -> Any:
  """A dataclass field that `parse` turns into a command-line flag.

  Args:
    default: the value when the flag is not given (not parsed). A bool option is a flag
      without a value that turns something on: its default must be False.
    help: what the option is; `parse` appends the default and the quick value.
    parse: text -> value, raising ValueError("must be ..."); None keeps the text (a str).
    quick: the value under ``--quick`` (not parsed); by default ``--quick`` leaves it.
    choices: the allowed values (after `parse`).
    metavar: the value's name in ``--help``; default: the parse function's ``metavar``.
    flag: the flag, e.g. ``"--lr"``; default: ``--`` and the field name, ``_`` -> ``-``.

  Raises:
    TypeError: a bool default other than False, or a default other than a str or None
      without `parse`.
  """
  if default is True or (parse is None and not isinstance(default, (str, bool, type(None)))):
    raise TypeError(f"option({default!r}, {help!r}): a bool default must be False and "
                    "a default other than a str or None needs parse=")
  return dataclasses.field(default=default, metadata={_KEY: _Option(
      help, parse, quick, None if choices is None else tuple(choices), metavar, flag)})


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:
    _refuse(message)


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
    cls: a dataclass whose fields are `option` fields, and optionally a plain
      ``quick: bool = False`` field, which adds ``--quick``.
    argv: the arguments, without the program name.
    prog: how the script is run, e.g. ``"python -m experiments.zoo"``.
    description: the ``--help`` description.
    check: cross-field rules: config -> error messages; the first one is refused.

  Raises:
    SystemExit: 0 after ``--help``; 2 after printing one ``error: ...`` line on stderr.
    TypeError: a field of `cls` is neither an `option` nor ``quick``, or an option has a
      quick value and `cls` has no ``quick`` field.
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
    notes = [] if is_bool else [f"default: {_show(default)}"]
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
      values[name] = _value(flags[name], opt, given[name])
    elif quick and opt.quick is not dataclasses.MISSING:
      values[name] = opt.quick
  config = cls(**values)
  problems = list(check(config)) if check else []
  if problems:
    _refuse(problems[0])
  return config


def _value(flag: str, opt: _Option, text: Any) -> Any:
  if text is True:  # a bool flag
    return True
  try:
    value = text if opt.parse is None else opt.parse(text)
  except ValueError as e:
    _refuse(f"{flag}: {e}, got {text!r}")
  if opt.choices is not None and value not in opt.choices:
    _refuse(f"{flag}: must be one of {', '.join(map(str, opt.choices))}, got {text!r}")
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
