"""Where the experiments' results go: files, the environment record, the console.

Output files are written atomically (a temporary file renamed into place), so an
interrupted run never leaves a half-written file behind. JSON is strict: NaN and
infinities become null (`json_ready`).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
import tempfile
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["environment", "first_crossing", "json_ready",
           "mean_std", "csv_text", "is_writer", "print_device", "progress", "write_json", "write_text"]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "tensorflow-datasets", "tensorflow-cpu",
             "matplotlib", "jaxloss")


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def environment() -> dict[str, Any]:
  """Device, package versions, Python, platform and the command line, for config.json."""
  import jax  # pylint: disable=import-outside-toplevel

  devices = jax.devices()
  return {
      "device": {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
                 "device_count": len(devices), "cpu_count": os.cpu_count()},
      "versions": {name: _version(name) for name in _PACKAGES},
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "command": _command_line(),
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _command_line() -> str:
  """How this process was started, e.g. ``python -m experiments.zoo --quick``."""
  main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if main_spec is not None and main_spec.name:
    name = main_spec.name.removesuffix(".__main__")
    head = f"python -m {name}"
  else:
    head = "python " + (sys.argv[0] if sys.argv else "")
  return " ".join([head] + sys.argv[1:])


def is_writer() -> bool:
  """Whether this process writes files: the only process, or process 0 of a multi-process
  run (`jaxloss.train.distributed`); the others compute the same results and write nothing."""
  if "jax" not in sys.modules:  # nothing joined a multi-process run yet
    return True
  from jaxloss.train import distributed  # pylint: disable=import-outside-toplevel

  return distributed.is_writer()


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (a temporary file renamed into place); only on the
  writing process (`is_writer`)."""
  if not is_writer():
    return
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented strict JSON (`json_ready`) to `path` atomically."""
  write_text(path, json.dumps(json_ready(obj), indent=2) + "\n")


def mean_std(values: Iterable[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for a single value); NaN if empty."""
  x = np.asarray(list(values), np.float64)
  if x.size == 0:
    return math.nan, math.nan
  return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def first_crossing(curve: Sequence[float], level: float) -> int | None:
  """Index of the first value ``>= level`` in `curve`, or None if it never gets there."""
  for i, value in enumerate(curve):
    if value >= level:
      return i
  return None


def progress(total: int, desc: str, *, disable: bool = False):
  """A tqdm progress bar on stderr (hidden with ``disable=True``, and on every process of a
  multi-process run but process 0)."""
  from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

  return tqdm(total=total, desc=desc, disable=disable or not is_writer(), dynamic_ncols=True,
              file=sys.stderr)


def print_device() -> dict[str, Any]:
  """Prints the device line (``device: CPU (...)``) and returns `environment()`."""
  env = environment()
  dev = env["device"]
  print(f"device: {dev['platform'].upper()} ({dev['device_kind']}, {dev['device_count']} "
        f"device(s)), jax {env['versions']['jax']}", flush=True)
  return env


def json_ready(obj):
  """`obj` with every non-finite float replaced by None (strict JSON), tuples as lists."""
  if isinstance(obj, dict):
    return {str(k): json_ready(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_ready(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return json_ready(obj.tolist())
  if isinstance(obj, (float, np.floating)):
    return float(obj) if math.isfinite(obj) else None
  if isinstance(obj, (np.integer, np.bool_)):
    return obj.item()
  return obj


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
  """Rows (dicts, the first one's keys as columns) as CSV; floats with 6 significant digits."""
  import csv  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel

  buf = io.StringIO()
  columns = list(dict.fromkeys(k for row in rows for k in row))
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
  return buf.getvalue()
