"""The command-line flags of the experiment scripts not yet on `experiments.harness`.

Being replaced by `experiments.cli`; the output helpers live in `experiments.outputs`
and are re-exported here for the scripts that still import them from this module.
"""

from __future__ import annotations

import argparse
import math

from experiments.outputs import (  # noqa: F401  (re-exported for the scripts)
    describe_device, environment, first_crossing, json_default, mean_std, print_device, progress,
    write_json, write_text)
from experiments.plots import plot_band  # noqa: F401

__all__ = [
    "add_data_args",
    "add_suite_args",
    "load_mnist_or_exit",
    "plot_band",
    "print_device",
    "add_run_args",
    "describe_device",
    "HelpFormatter",
    "environment",
    "first_crossing",
    "json_default",
    "mean_std",
    "parse_floats",
    "parse_ints",
    "parse_learning_rates",
    "parse_seeds",
    "positive_float",
    "positive_int",
    "progress",
    "write_json",
    "write_text",
]

def parse_ints(text: str) -> tuple[int, ...]:
  """``"512,512"`` -> ``(512, 512)``; ``""`` -> ``()`` (a linear model)."""
  text = text.strip()
  if not text:
    return ()
  try:
    return tuple(int(part) for part in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_seeds(text: str) -> tuple[int, ...]:
  """``"3"`` -> seeds ``(0, 1, 2)``; ``"0,5,7"`` -> those seeds."""
  seeds = parse_ints(text)
  if len(seeds) == 1 and "," not in text:
    if seeds[0] < 1:
      raise argparse.ArgumentTypeError(f"need at least one seed, got {text!r}")
    return tuple(range(seeds[0]))
  if not seeds or len(set(seeds)) != len(seeds):
    raise argparse.ArgumentTypeError(f"seeds must be distinct integers, got {text!r}")
  return seeds


def positive_int(text: str) -> int:
  """argparse type: an integer ``>= 1`` (epochs, batch size); ``"0"`` is refused."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
  return value


def positive_float(text: str) -> float:
  """argparse type: a finite number ``> 0`` (a learning rate); nan, inf, 0 are refused."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not (math.isfinite(value) and value > 0):
    raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
  return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Shows an option's default unless its help already says it or there is none."""

  def _get_help_string(self, action):
    text = action.help or ""
    if ("default" in text or action.default is None or action.default is False
        or action.default is argparse.SUPPRESS):
      return text
    return super()._get_help_string(action)


def add_data_args(parser: argparse.ArgumentParser) -> None:
  """``--mnist-dir``, ``--data-dir``, ``--train-subset``, ``--test-subset``."""
  group = parser.add_argument_group("data")
  group.add_argument(
      "--mnist-dir", default=None,
      help="folder with the four original MNIST .gz files, given to tensorflow-datasets as its "
           "manual download dir (default: $JAXLOSS_MNIST_DIR; without it TFDS downloads them)")
  group.add_argument(
      "--data-dir", default=None,
      help="TFDS data dir where MNIST is prepared once "
           "(default: $JAXLOSS_DATA_DIR, else ~/tensorflow_datasets)")
  group.add_argument("--train-subset", type=int, default=None, metavar="N",
                     help="train on the first N training images only (quick runs, tests)")
  group.add_argument("--test-subset", type=int, default=None, metavar="N",
                     help="evaluate on the first N test images only (quick runs, tests)")


def add_run_args(parser: argparse.ArgumentParser, *, out: str) -> None:
  """``--out`` and ``--no-progress``."""
  parser.add_argument("--out", default=out, help="output folder")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_suite_args(parser: argparse.ArgumentParser, *, out: str, seeds: str = "0,1,2",
                   lrs: str | None = None) -> None:
  """The flags every experiment-suite script shares.

  ``--seeds``, ``--lrs`` (the learning-rate grid, selected on a validation
  split; default `experiments.runs.ADAM_LR_GRID`), ``--quick`` (a tiny
  configuration for tests and smoke runs), the data flags and ``--out`` /
  ``--no-progress``.
  """
  if lrs is None:
    from experiments.runs import ADAM_LR_GRID  # pylint: disable=import-outside-toplevel

    lrs = ",".join(f"{lr:g}" for lr in ADAM_LR_GRID)
  parser.add_argument("--seeds", type=parse_seeds, default=seeds,
                      help="a count N (seeds 0..N-1) or a comma-separated list of seeds")
  parser.add_argument("--lrs", type=parse_learning_rates, default=lrs,
                      help="learning-rate grid, comma-separated; every loss gets the same grid "
                           "and its rate is selected on a validation split of the training set")
  parser.add_argument("--quick", action="store_true",
                      help="tiny data, model and epochs: a smoke run for tests (numbers "
                           "meaningless)")
  add_data_args(parser)
  add_run_args(parser, out=out)


def parse_floats(text: str) -> tuple[float, ...]:
  """``"1e-3,3e-3"`` -> ``(0.001, 0.003)``; at least one value."""
  try:
    values = tuple(float(t) for t in text.split(",") if t.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
  if not values:
    raise argparse.ArgumentTypeError("expected at least one number")
  return values


def parse_learning_rates(text: str) -> tuple[float, ...]:
  """`parse_floats`, each value a finite number ``> 0`` (nan, inf, 0 are refused)."""
  values = parse_floats(text)
  bad = [v for v in values if not (math.isfinite(v) and v > 0)]
  if bad:
    raise argparse.ArgumentTypeError(
        f"learning rates must be finite numbers > 0, got {', '.join(map(str, bad))}")
  return values


def load_mnist_or_exit(args: argparse.Namespace):
  """Full MNIST (NumPy arrays) from the data flags; a clear SystemExit if unavailable.

  Applies ``--train-subset`` / ``--test-subset`` and prints what was loaded.
  """
  import time  # pylint: disable=import-outside-toplevel

  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  t0 = time.perf_counter()
  try:
    data = jt.load_mnist(mnist_dir=args.mnist_dir, data_dir=args.data_dir)
  except (jt.MnistNotFoundError, jt.MnistCorruptError) as err:
    raise SystemExit(f"error: {err}") from None
  data = data.subset(args.train_subset, args.test_subset)
  print(f"MNIST: {data.train_images.shape[0]} train / {data.test_images.shape[0]} test images "
        f"loaded in {time.perf_counter() - t0:.1f} s", flush=True)
  return data
