"""experiments.cli: options, parse functions, --quick, one-line refusals, --help, to_dict."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from experiments import cli

PROG = "python -m experiments.demo"


@dataclasses.dataclass(frozen=True)
class Config:
  seeds: tuple[int, ...] = cli.option(
      (0, 1, 2, 3, 4), "a count N (seeds 0..N-1) or a comma-separated list", parse=cli.seeds,
      quick=(0, 1))
  lrs: tuple[float, ...] = cli.option((1e-4, 3e-4, 1e-3), "learning-rate grid", parse=cli.rates,
                                      quick=(3e-3,))
  epochs: int = cli.option(10, "training epochs", parse=cli.positive_int, quick=2)
  alpha: float = cli.option(0.1, "smoothing, 100% = uniform",
                            parse=cli.number(low=0.0, high=1.0))
  optimizer: str = cli.option("adam", "optax optimizer", choices=("sgd", "adam"))
  hidden: tuple[int, ...] = cli.option((512, 512), "hidden widths", parse=cli.ints, quick=())
  train_subset: int | None = cli.option(None, "train on the first N images",
                                        parse=cli.positive_int, quick=2048)
  batch_size: int = cli.option(128, "batch size", parse=cli.positive_int, flag="--batch",
                               metavar="B")
  out: str = cli.option("runs/demo", "output folder", metavar="DIR")
  no_progress: bool = cli.option(False, "hide the progress bar")
  quick: bool = False


def _parse(argv, **kwargs):
  return cli.parse(Config, argv, prog=PROG, description="A demo.", **kwargs)


def _refusal(capsys, argv, **kwargs) -> str:
  """The one stderr line of a refused command line (exit status 2, nothing else printed)."""
  with pytest.raises(SystemExit) as exc:
    _parse(argv, **kwargs)
  assert exc.value.code == 2
  out, err = capsys.readouterr()
  assert out == ""
  assert err.endswith("\n") and err.count("\n") == 1, err
  assert err.startswith("error: ") and "usage:" not in err and "Traceback" not in err
  return err.strip()


# ----------------------------------------------------------------------------- parse functions


@pytest.mark.parametrize("fn, text, value", [
    (cli.positive_int, "1", 1), (cli.positive_int, " 12 ", 12),
    (cli.nonnegative_int, "0", 0), (cli.nonnegative_int, "7", 7),
    (cli.positive_number, "1e-3", 1e-3), (cli.positive_number, "2", 2.0),
    (cli.number(), "-1.5", -1.5), (cli.number(low=0.0, high=1.0), "0", 0.0),
    (cli.number(low=0.0, high=1.0), "1", 1.0), (cli.number(high=0.0, high_open=True), "-3", -3.0),
    (cli.ints, "512,512", (512, 512)), (cli.ints, "", ()), (cli.ints, " 32 ", (32,)),
    (cli.ints, "-1, 2", (-1, 2)),
    (cli.seeds, "3", (0, 1, 2)), (cli.seeds, "1", (0,)), (cli.seeds, "0,5,7", (0, 5, 7)),
    (cli.seeds, "7,", (7,)),
    (cli.rates, "1e-3,3e-3", (1e-3, 3e-3)), (cli.rates, "0.1", (0.1,)),
    (cli.numbers(low=0.0, high=1.0), "0, 0.5,1", (0.0, 0.5, 1.0)),
    (cli.names, "a, b_c", ("a", "b_c")), (cli.names, "softmax", ("softmax",)),
])
def test_parse_functions_accept(fn, text, value):
  assert fn(text) == value


@pytest.mark.parametrize("fn, text", [
    (cli.positive_int, "0"), (cli.positive_int, "-1"), (cli.positive_int, "1.5"),
    (cli.positive_int, ""), (cli.positive_int, "nan"), (cli.nonnegative_int, "-1"),
    (cli.nonnegative_int, "x"),
    (cli.positive_number, "0"), (cli.positive_number, "-1"), (cli.positive_number, "nan"),
    (cli.positive_number, "inf"), (cli.positive_number, ""), (cli.positive_number, "x"),
    (cli.number(), "nan"), (cli.number(), "-inf"),
    (cli.number(low=0.0, high=1.0), "-0.1"), (cli.number(low=0.0, high=1.0), "1.1"),
    (cli.number(low=0.0, low_open=True), "0"), (cli.number(high=1.0, high_open=True), "1"),
    (cli.ints, "1,,2"), (cli.ints, "1,x"), (cli.ints, ","), (cli.ints, "1.5"),
    (cli.seeds, "0"), (cli.seeds, "-1"), (cli.seeds, ""), (cli.seeds, "0,0"), (cli.seeds, "0,-1"),
    (cli.seeds, ","), (cli.seeds, "x"),
    (cli.rates, ""), (cli.rates, "0"), (cli.rates, "-1e-3"), (cli.rates, "nan"),
    (cli.rates, "inf"), (cli.rates, "1e-3,1e-3"), (cli.rates, "1e-3,0.001"), (cli.rates, "1e-3,,"),
    (cli.numbers(low=0.0, high=1.0), "0.5,2"), (cli.numbers(), "1,1"), (cli.numbers(), ""),
    (cli.names, ""), (cli.names, "a,,b"), (cli.names, "a,a"), (cli.names, " , "),
])
def test_parse_functions_refuse(fn, text):
  with pytest.raises(ValueError, match=r"^must be "):
    fn(text)


def test_range_messages_name_the_range():
  with pytest.raises(ValueError, match=r"^must be a finite number in \(0, 1\]$"):
    cli.number(0.0, 1.0, low_open=True)("0")
  with pytest.raises(ValueError, match=r"^must be a finite number > 0$"):
    cli.positive_number("0")
  with pytest.raises(ValueError, match=r"^must be an integer >= 1$"):
    cli.positive_int("0")


# ----------------------------------------------------------------------------- parse


def test_defaults_are_the_dataclass_defaults():
  config = _parse([])
  assert config == Config()
  assert config.seeds == (0, 1, 2, 3, 4) and config.train_subset is None
  assert config.no_progress is False and config.quick is False


def test_flags_are_parsed():
  config = _parse(["--seeds", "3", "--lrs", "1e-3,3e-3", "--epochs", "4", "--alpha", "0",
                   "--optimizer", "sgd", "--hidden", "", "--train-subset", "100", "--batch",
                   "64", "--out", "/tmp/x y", "--no-progress"])
  assert config == Config(seeds=(0, 1, 2), lrs=(1e-3, 3e-3), epochs=4, alpha=0.0,
                          optimizer="sgd", hidden=(), train_subset=100, batch_size=64,
                          out="/tmp/x y", no_progress=True)


def test_quick_replaces_only_the_options_not_given():
  assert _parse(["--quick"]) == Config(seeds=(0, 1), lrs=(3e-3,), epochs=2, hidden=(),
                                       train_subset=2048, quick=True)
  config = _parse(["--quick", "--seeds", "0,1,2", "--epochs", "10"])
  assert config.seeds == (0, 1, 2) and config.epochs == 10  # 10 is the plain default: kept
  assert config.lrs == (3e-3,) and config.train_subset == 2048 and config.quick
  # A value equal to the plain default is still the user's choice, in either order.
  assert _parse(["--seeds", "0,1,2,3,4", "--quick"]).seeds == (0, 1, 2, 3, 4)
  assert _parse(["--quick", "--hidden", "512,512"]).hidden == (512, 512)


def test_refusal_names_the_flag_and_the_text(capsys):
  assert _refusal(capsys, ["--epochs", "0"]) == "error: --epochs: must be an integer >= 1, got '0'"
  assert _refusal(capsys, ["--alpha=nan"]) == (
      "error: --alpha: must be a finite number in [0, 1], got 'nan'")
  assert _refusal(capsys, ["--optimizer", "rmsprop"]) == (
      "error: --optimizer: must be one of sgd, adam, got 'rmsprop'")
  assert _refusal(capsys, ["--batch", "0"]).startswith("error: --batch: must be")


@pytest.mark.parametrize("argv", [
    ["--lrs", "1e-3,1e-3"], ["--lrs=-1"], ["--seeds", "0,0"], ["--seeds", "0"],
    ["--train-subset", "0"], ["--alpha", "1.5"], ["--hidden", "1,x"], ["--epochs", "inf"],
    ["--quick", "--epochs", "0"], ["--epochs", "3", "--epochs", "0"],
])
def test_bad_values_are_refused_in_one_line(capsys, argv):
  flag, text = argv[-1].split("=") if "=" in argv[-1] else argv[-2:]
  line = _refusal(capsys, argv)
  assert line.startswith(f"error: {flag}: must be ") and line.endswith(f", got {text!r}")


@pytest.mark.parametrize("argv, says", [
    (["--foo"], "unrecognized arguments: --foo"), (["--ep", "3"], "unrecognized arguments"),
    (["extra"], "unrecognized arguments: extra"), (["--epochs"], "expected one argument"),
    (["--no-progress=1"], "ignored explicit argument"),
])
def test_argparse_errors_are_one_line(capsys, argv, says):
  assert says in _refusal(capsys, argv)


def test_check_refusal_and_what_check_sees(capsys):
  seen = []

  def check(config):
    seen.append(config)
    if config.train_subset and config.batch_size > config.train_subset:
      return [f"--batch {config.batch_size} is larger than the training set", "a second one"]
    return []

  assert _parse(["--quick"], check=check).quick and seen[-1].train_subset == 2048
  assert _refusal(capsys, ["--quick", "--batch", "4096"], check=check) == (
      "error: --batch 4096 is larger than the training set")
  assert _refusal(capsys, [], check=lambda c: ["two\nlines"]) == "error: two lines"


def test_help_shows_real_defaults_and_quick_values(capsys):
  with pytest.raises(SystemExit) as exc:
    _parse(["--help"])
  assert exc.value.code == 0
  out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
  assert out.startswith(f"usage: {PROG}")
  for text in ["--epochs N training epochs (default: 10; --quick: 2)",
               "--seeds N|LIST a count N (seeds 0..N-1) or a comma-separated list "
               "(default: 0,1,2,3,4; --quick: 0,1)",
               "--lrs LIST learning-rate grid (default: 0.0001,0.0003,0.001; --quick: 0.003)",
               "smoothing, 100% = uniform (default: 0.1)",
               "--optimizer {sgd,adam} optax optimizer (default: adam)",
               '(default: 512,512; --quick: "")', "(default: none; --quick: 2048)",
               "--batch B batch size (default: 128)", "--out DIR output folder",
               "--no-progress hide the progress bar",
               "--quick a tiny configuration for tests and smoke runs: --seeds 0,1; --lrs 0.003; "
               '--epochs 2; --hidden ""; --train-subset 2048 (each unless given)']:
    assert text in out


def test_to_dict_is_json_ready():
  data = cli.to_dict(_parse(["--quick"]))
  assert data["seeds"] == [0, 1] and data["hidden"] == [] and data["quick"] is True
  assert json.loads(json.dumps(data)) == data
  assert list(data) == [f.name for f in dataclasses.fields(Config)]


def test_command_quotes_the_arguments():
  assert cli.command(PROG, ["--out", "/tmp/a b", "--quick"]) == f"{PROG} --out '/tmp/a b' --quick"
  assert cli.command(PROG, []) == PROG


def test_a_dataclass_without_quick_has_no_quick_flag(capsys):
  @dataclasses.dataclass(frozen=True)
  class Plain:
    epochs: int = cli.option(3, "epochs", parse=cli.positive_int)
    verbose: bool = cli.option(False, "say more")

  assert cli.parse(Plain, ["--verbose"], prog=PROG, description="") == Plain(verbose=True)
  with pytest.raises(SystemExit):
    cli.parse(Plain, ["--quick"], prog=PROG, description="")
  assert "unrecognized arguments: --quick" in capsys.readouterr().err


def test_declaration_mistakes_are_type_errors():
  with pytest.raises(TypeError):
    cli.option(True, "a flag that is on by default")
  with pytest.raises(TypeError):
    cli.option(3, "an int without a parse function")

  @dataclasses.dataclass(frozen=True)
  class NotAnOption:
    epochs: int = 3

  @dataclasses.dataclass(frozen=True)
  class QuickWithoutField:
    epochs: int = cli.option(3, "epochs", parse=cli.positive_int, quick=1)

  for cls in (NotAnOption, QuickWithoutField):
    with pytest.raises(TypeError):
      cli.parse(cls, [], prog=PROG, description="")


def test_defaults_and_quick_values_are_not_parsed():
  @dataclasses.dataclass(frozen=True)
  class Raw:
    rate: float = cli.option(math.inf, "not parsed", parse=cli.positive_number, quick=0.0)
    quick: bool = False

  assert cli.parse(Raw, [], prog=PROG, description="").rate == math.inf
  assert cli.parse(Raw, ["--quick"], prog=PROG, description="").rate == 0.0
