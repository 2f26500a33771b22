"""Resumable, failure-tolerant training runs: the experiments' unit of training.

A *run* trains one `TrainConfig` with one loss for every (grid point, seed) side by side
as ONE compiled program (`jaxloss.train.iterate_training`; a grid point is a learning rate
and optionally loss hyperparameters, all traced data). A run owns ``OUT/runs/RUN_ID/``:

* ``run.json``: what the run is (description, config, seeds, points) and the fingerprint
  of its code (`code_fingerprint`). Another run under the same id is refused
  (`RunMismatchError`, nothing changed); a run whose code changed is trained again from
  scratch, and `run` says which files or functions changed.
* ``metrics.jsonl``: one row per (model, epoch), rewritten atomically after each epoch.
* ``ckpt/``: an Orbax checkpoint after the latest epoch, removed when the run ends.
* ``test.npz``: given a ``test`` split, every model's metrics and per-example correctness
  on it, computed once after the last epoch (the caller reads what its protocol allows).
* ``final_params.npz``: with ``RunSpec.keep_final``, every model's parameters after the last
  epoch (leading model axis), read back as `RunResult.final_params`: e.g. to start another
  run from them (``RunSpec.init_params``).
* ``result.json``: written last; its presence marks the run as finished.

A finished run is read back; an unfinished one continues from its last checkpoint, and
since shuffling is keyed by (seed, epoch) it gives the numbers of an uninterrupted run.
A run started from given parameters (``RunSpec.init_params``) has their digest in its code
fingerprint: when they change (e.g. their source run was trained again), it trains again.
A model whose training loss or parameters stop being finite is recorded as diverged at
that epoch (``"diverged": true``) and gets no further rows; when all have diverged the
run stops with status ``"diverged"`` and the experiment goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import shutil
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from experiments import outputs

__all__ = ["RunMismatchError", "RunResult", "RunSpec", "check_folder", "code_fingerprint",
           "differences", "params_digest", "run"]


class RunMismatchError(RuntimeError):
  """The run folder holds a different run than the one asked for."""


def _source(fn) -> str:
  """Source of a function (a `functools.partial` unwrapped, its bound arguments included)."""
  parts = []
  while isinstance(fn, functools.partial):
    parts.append(repr((fn.args, sorted(fn.keywords.items()))))
    fn = fn.func
  target = getattr(fn, "__func__", fn)  # a bound method: its function
  try:
    parts.append(inspect.getsource(target))
  except (OSError, TypeError):
    parts.append(getattr(target, "__qualname__", repr(target)))
  return "\n".join(parts)


def _digest(text: str | bytes) -> str:
  return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _jaxloss_sources() -> tuple[tuple[str, str], ...]:
  import jaxloss  # pylint: disable=import-outside-toplevel

  root = os.path.dirname(os.path.abspath(jaxloss.__file__))
  out = []
  for folder, _, files in sorted(os.walk(root)):
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out.append(("jaxloss/" + os.path.relpath(path, root).replace(os.sep, "/"),
                    _digest(f.read())))
  return tuple(out)


def code_fingerprint(**functions: Callable | None) -> dict[str, str]:
  """Hashes of the code behind a run: every jaxloss source file and the given functions.

  Example: ``code_fingerprint(loss_fn=..., eval_fn=...)`` -> ``{"jaxloss/_src/focal.py":
  "3f2a...", ..., "loss_fn": "9c1b..."}``. Two runs with equal fingerprints ran the same
  loss, model, trainer and evaluation code.
  """
  out = dict(_jaxloss_sources())
  out.update({name: _digest(_source(fn)) for name, fn in functions.items() if fn is not None})
  return out


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run: a config, a loss and the models trained together.

  Attributes:
    run_id: the run's folder name under ``OUT/runs/`` (letters, digits, ``._-``).
    config: the `jaxloss.train.TrainConfig`.
    loss_fn: ``loss_fn(logits [B, C], labels [B, ...], **loss_params) -> scalar``.
    predict_fn, eval_fn: see `jaxloss.train.iterate_training`; eval_fn's metric names
      become row keys.
    seeds: the seeds.
    describe: JSON-ready description, stored in ``run.json`` and compared on resume.
    learning_rates, loss_params: the grid: R peak rates, and ``{name: R values}`` of loss
      hyperparameters (traced); None: one point at the config's rate.
    test_fn: ``test_fn(logits [N, C], labels) -> {name: array}`` recorded per model by the
      final test evaluation; default ``{"correct": predict_fn(logits) == labels}``.
    keep_final: store the final parameters (``final_params.npz``) so that the result,
      also when read back, has them (`RunResult.final_params`). Changes no number: a
      finished run without them is trained again.
    init_params: parameters to start every model from instead of its seed's fresh
      initialization (`jaxloss.train.iterate_training`'s ``init_params``: a pytree with a
      leading model axis in the order of `models`), with a fresh optimizer. Marked in the
      identity (``"init_params": "given"``); their digest is part of `code`, so other
      parameters under the same id train the run again.
  """

  run_id: str
  config: Any
  loss_fn: Callable
  predict_fn: Callable | None = None
  eval_fn: Callable | None = None
  seeds: tuple[int, ...] = (0, 1, 2)
  describe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  learning_rates: tuple[float, ...] | None = None
  loss_params: Mapping[str, tuple[float, ...]] | None = None
  test_fn: Callable | None = None
  keep_final: bool = False
  init_params: Any = dataclasses.field(default=None, compare=False, repr=False)

  def points(self) -> list[dict[str, float]]:
    """One dict per grid point: ``{"lr": rate, **loss params}`` (``[{}]`` without a grid)."""
    if self.learning_rates is None and not self.loss_params:
      return [{}]
    n = len(self.learning_rates) if self.learning_rates is not None else len(
        next(iter(self.loss_params.values())))
    rates = self.learning_rates or (self.config.learning_rate,) * n
    params = self.loss_params or {}
    return [{"lr": float(rates[i]), **{k: float(v[i]) for k, v in params.items()}}
            for i in range(n)]

  def models(self) -> list[dict[str, Any]]:
    """Point-major: ``{"seed": s, **point}`` for every point and seed."""
    return [{**point, "seed": int(seed)} for point in self.points() for seed in self.seeds]

  def identity(self) -> dict[str, Any]:
    """What ``run.json`` stores: everything that determines the run's numbers."""
    return outputs.json_ready({
        "run_id": self.run_id, "describe": dict(self.describe),
        "config": dataclasses.asdict(self.config), "seeds": list(self.seeds),
        **({"points": self.points()} if self.points() != [{}] else {}),
        **({"init_params": "given"} if self.init_params is not None else {})})

  def code(self) -> dict[str, str]:
    """`code_fingerprint` of this run's functions (and `params_digest` of `init_params`)."""
    out = code_fingerprint(loss_fn=self.loss_fn, predict_fn=self.predict_fn,
                           eval_fn=self.eval_fn, test_fn=self.test_fn)
    if self.init_params is not None:
      out["init_params"] = params_digest(self.init_params)
    return out


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """A nested dict of arrays as ``{"a/b": array}`` (parameter names hold no ``/``)."""
  out: dict[str, Any] = {}
  for key in sorted(tree):
    value = tree[key]
    if isinstance(value, Mapping):
      out.update(_flat(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _nested(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of `_flat`."""
  out: dict[str, Any] = {}
  for key, value in flat.items():
    *parents, leaf = key.split("/")
    node = out
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return out


def params_digest(params: Mapping[str, Any]) -> str:
  """A hash of a nested dict of arrays: names, shapes, dtypes and values."""
  digest = hashlib.sha256()
  for key, value in _flat(params).items():
    value = np.ascontiguousarray(value)
    digest.update(f"{key}:{value.dtype.str}:{value.shape};".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()[:16]


@dataclasses.dataclass
class RunResult:
  """A run's rows and outcome.

  Attributes:
    run_id, models: the id; ``{"seed": s, **point}`` per model (`RunSpec.models`).
    status: ``"done"`` or ``"diverged"`` (every model diverged).
    rows: one dict per (model, epoch), in epoch order.
    diverged: model -> the epoch its loss or parameters became non-finite; the model is
      its seed without a grid, its index in `models` in a grid.
    wall_seconds: training + evaluation time of the whole run (all sessions).
    resumed_from: the epoch a continued run started after (0 if fresh), or None if the
      run was finished and only read back.
    test: the final test evaluation, name -> one value per model (and the `test_fn`
      outputs, e.g. ``"correct"`` ``[models, N]``), or None without a test split.
    final_params: with ``RunSpec.keep_final``, every model's parameters after the last
      epoch, a nested dict of NumPy arrays with a leading model axis (else None).
  """

  run_id: str
  status: str
  rows: list[dict[str, Any]]
  diverged: dict[int, int]
  wall_seconds: float
  resumed_from: int | None
  models: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  test: dict[str, np.ndarray] | None = None
  final_params: dict[str, Any] | None = None

  @property
  def seeds(self) -> list[int]:
    return sorted({r["seed"] for r in self.rows})

  @property
  def epochs(self) -> int:
    return max((r["epoch"] for r in self.rows), default=0)

  def curve(self, metric: str) -> np.ndarray:
    """``[epochs, seeds]`` values of `metric` (NaN where a seed has no row)."""
    seeds = self.seeds
    out = np.full((self.epochs, len(seeds)), np.nan)
    for r in self.rows:
      value = r.get(metric)
      if value is not None and np.ndim(value) == 0:
        out[r["epoch"] - 1, seeds.index(r["seed"])] = value
    return out

  def final(self, metric: str) -> np.ndarray:
    """``[seeds]`` value of `metric` at the last epoch (NaN for a diverged seed)."""
    return self.curve(metric)[-1] if self.epochs else np.array([])

  def points(self) -> list[dict[str, float]]:
    """The grid points of `models`, in order (``[{}]`` without a grid)."""
    out: list[dict[str, float]] = []
    for model in self.models:
      if _point_of(model) not in out:
        out.append(_point_of(model))
    return out or [{}]

  def point(self, index: int) -> "RunResult":
    """Grid point `index` as a run of its own: its rows, seed-keyed `diverged`, its test."""
    if self.points() == [{}]:
      return self
    per = len(self.models) // len(self.points())
    keep = range(index * per, (index + 1) * per)
    models = [self.models[i] for i in keep]
    want = _point_of(models[0])
    rows = [r for r in self.rows if all(r.get(k) == v for k, v in want.items())]
    diverged = {self.models[i]["seed"]: e for i, e in self.diverged.items() if i in keep}
    test = None if self.test is None else {k: np.asarray(v)[index * per:(index + 1) * per]
                                           for k, v in self.test.items()}
    final = None if self.final_params is None else _nested(
        {k: np.asarray(v)[index * per:(index + 1) * per]
         for k, v in _flat(self.final_params).items()})
    status = "diverged" if len(diverged) == per else "done"
    return RunResult(self.run_id, status, rows, diverged, self.wall_seconds, self.resumed_from,
                     models, test, final)


def _point_of(model: Mapping[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in model.items() if k != "seed"}


def _read_rows(path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _write_rows(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  outputs.write_text(path, "".join(json.dumps(outputs.json_ready(r)) + "\n" for r in rows))


def _value(x) -> Any:
  x = np.asarray(x)
  return float(x) if x.ndim == 0 else x.astype(np.float64).tolist()


def differences(stored: Any, wanted: Any, path: str = "", limit: int = 3) -> str:
  """The settings that differ, e.g. ``"config.learning_rate is 0.003 there, 0.001 here"``."""
  found: list[str] = []

  def walk(a, b, where):
    if isinstance(a, dict) and isinstance(b, dict):
      for key in sorted(set(a) | set(b), key=str):
        walk(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{where}.{key}" if where else key)
    elif a != b:
      found.append(f"{where or 'the run'} is {json.dumps(a)} there, {json.dumps(b)} here")

  walk(stored, wanted, path)
  more = f" (and {len(found) - limit} more)" if len(found) > limit else ""
  return "; ".join(found[:limit]) + more


def without_new_defaults(stored: Mapping[str, Any], wanted: Mapping[str, Any],
                         defaults: Mapping[str, Any]) -> dict[str, Any]:
  """`wanted` less the keys that `stored` lacks and whose value is their default here.

  An option added after a folder was written (e.g. ``precision``) then leaves the
  folder's runs comparable, as long as it keeps its default.
  """
  return {k: v for k, v in wanted.items()
          if k in stored or k not in defaults or v != outputs.json_ready(defaults[k])}


def dataclass_defaults(cls) -> dict[str, Any]:
  """Field name -> default value of a dataclass (fields without a default left out)."""
  return {f.name: f.default for f in dataclasses.fields(cls)
          if f.default is not dataclasses.MISSING}


def check_folder(spec: RunSpec, out_dir: str) -> None:
  """Raises `RunMismatchError` if ``out_dir`` holds a different run under ``spec.run_id``.

  Changes nothing on disk; `run` calls it first, and a caller can call it for all of
  its runs before training any.
  """
  folder = os.path.join(out_dir, "runs", spec.run_id)
  run_json = os.path.join(folder, "run.json")
  if not os.path.exists(run_json):
    return
  with open(run_json) as f:
    stored = json.load(f)
  stored.pop("code", None)
  identity = spec.identity()
  identity["config"] = without_new_defaults(stored.get("config", {}), identity["config"],
                                            dataclass_defaults(type(spec.config)))
  if stored != identity:
    raise RunMismatchError(
        f"{folder} holds a different run: {differences(stored, identity)}. Nothing was "
        "changed there. Use another --out, or delete that folder to train this run again.")


def _code_changes(folder: str, code: Mapping[str, str]) -> list[str]:
  """Names whose hash differs between the stored run and `code` (empty if none stored)."""
  with open(os.path.join(folder, "run.json")) as f:
    stored = json.load(f).get("code")
  if stored is None:
    return ["(no fingerprint stored)"]
  return sorted(k for k in set(stored) | set(code) if stored.get(k) != code.get(k))


def _test_eval(spec: RunSpec, state, test) -> dict[str, np.ndarray]:
  """Every model's metrics on the test split and its per-example correctness."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from jaxloss.train import sharding  # pylint: disable=import-outside-toplevel

  model = spec.config.model()
  evaluate = jt.make_evaluate(model.apply, batch_size=spec.config.eval_batch_size,
                              predict_fn=spec.predict_fn, eval_fn=spec.eval_fn)
  logits_fn = jt.make_batched_apply(model.apply, batch_size=spec.config.eval_batch_size)
  predict = spec.predict_fn or jt.argmax_predict
  test_fn = spec.test_fn or (lambda z, y: {"correct": predict(z) == y})
  labels = np.asarray(test[1])
  if np.issubdtype(labels.dtype, np.integer):
    labels = labels.astype(np.int32)
  # The split goes where the models are: replicated over their mesh (or their device).
  where = jax.tree.leaves(state.params)[0].sharding
  mesh = where.mesh if isinstance(where, jax.sharding.NamedSharding) else None
  images, labels = sharding.put((np.asarray(test[0]), labels), sharding.replicated(mesh))

  def one(params, images, labels):
    return {**evaluate(params, images, labels), **test_fn(logits_fn(params, images), labels)}

  # to_host: the models may be spread over several processes' devices.
  out = sharding.to_host(jax.jit(jax.vmap(one, in_axes=(0, None, None)))(state.params, images,
                                                                          labels))
  return {k: np.asarray(v) for k, v in out.items()}


def _final_eval(spec: RunSpec, state, test, also) -> dict[str, np.ndarray]:
  """`_test_eval` on `test`, and on each split of `also` with its keys as ``SPLIT/KEY``."""
  out = _test_eval(spec, state, test)
  for split, pair in (also or {}).items():
    out.update({f"{split}/{k}": v for k, v in _test_eval(spec, state, pair).items()})
  return out


def _missing_splits(test_npz: str, also: Mapping[str, Any]) -> list[str]:
  with np.load(test_npz) as stored:
    have = {k.split("/", 1)[0] for k in stored.files if "/" in k}
  return sorted(set(also) - have)


def run(spec: RunSpec, data, out_dir: str, *, bar=None, on_epoch=None, mesh="auto",
        test=None, also: Mapping[str, Any] | None = None,
        say: Callable[[str], Any] = print) -> RunResult:
  """Trains `spec` on `data`, or reads it back if finished, or continues it.

  Args:
    spec: the run.
    data: ``train_images, train_labels, test_images, test_labels``; the evaluation metrics
      of every epoch are those of the ``test_*`` arrays (e.g. a validation split).
    out_dir: the experiment's output folder; the run lives in ``out_dir/runs/``.
    bar: optional progress bar, advanced once per epoch.
    on_epoch: optional ``on_epoch(spec, rows_of_this_epoch)`` after each saved epoch.
    mesh: passed to `jaxloss.train.iterate_training`.
    test: optional ``(images, labels)`` every model is evaluated on once, at the end.
    also: optional ``{split: (images, labels)}`` evaluated the same way after `test` (which
      it needs), stored under ``SPLIT/KEY`` keys of `RunResult.test`; e.g. the validation
      split, to fit a temperature or a threshold there and apply it to the test outputs.
    say: where the run says that it trains again, and why.

  Raises:
    RunMismatchError: the folder holds a run with other settings (`check_folder`).
  """
  from jaxloss.train import checkpoints  # pylint: disable=import-outside-toplevel
  from jaxloss.train import distributed  # pylint: disable=import-outside-toplevel
  from jaxloss.train import iterate_training  # pylint: disable=import-outside-toplevel

  if also and test is None:
    raise ValueError("run: `also` evaluates after `test`; give `test` too")

  # Several processes (jaxloss.train.distributed): all of them read the folder and
  # decide alike, all train and save the checkpoints together (Orbax writes each
  # process's shards), and only process 0 writes the other files. The barriers keep
  # every read after the writes it depends on.
  distributed.barrier(f"run {spec.run_id}: start")
  check_folder(spec, out_dir)
  folder = os.path.join(out_dir, "runs", spec.run_id)
  run_json, rows_path = os.path.join(folder, "run.json"), os.path.join(folder, "metrics.jsonl")
  result_json, ckpt = os.path.join(folder, "result.json"), os.path.join(folder, "ckpt")
  test_npz, final_npz = os.path.join(folder, "test.npz"), os.path.join(folder, "final_params.npz")
  code, models = spec.code(), spec.models()
  update = bar.update if bar is not None else (lambda n: None)
  reason = None
  if os.path.exists(run_json) and (changed := _code_changes(folder, code)):
    reason = (f"its code changed since it was trained ({', '.join(changed[:4])}"
              f"{' ...' if len(changed) > 4 else ''})")
  elif test is not None and os.path.exists(result_json) and not os.path.exists(test_npz):
    reason = "it finished without a test evaluation"
  elif also and os.path.exists(test_npz) and (missing := _missing_splits(test_npz, also)):
    reason = f"it finished without an evaluation on {', '.join(missing)}"
  elif spec.keep_final and os.path.exists(result_json) and not os.path.exists(final_npz):
    reason = "it finished without keeping its final parameters"
  finished = os.path.exists(result_json) and not reason
  if reason:
    say(f"run {spec.run_id}: {reason}; training it again")
    if outputs.is_writer():
      shutil.rmtree(folder)
  distributed.barrier(f"run {spec.run_id}: checked")
  if not os.path.exists(run_json):
    outputs.write_json(run_json, {**spec.identity(), "code": code})
  if finished:
    with open(result_json) as f:
      result = json.load(f)
    update(spec.config.epochs)
    tested = final = None
    if test is not None:
      with np.load(test_npz) as stored:
        tested = {k: stored[k] for k in stored.files}
    if spec.keep_final:
      with np.load(final_npz) as stored:
        final = _nested({k: stored[k] for k in stored.files})
    return RunResult(spec.run_id, result["status"], _read_rows(rows_path),
                     {int(k): v for k, v in result["diverged"].items()},
                     result["wall_seconds"], None, models, tested, final)

  grid = spec.points() != [{}]
  done_epoch = checkpoints.latest_epoch(ckpt) or 0
  rows = [r for r in _read_rows(rows_path) if r["epoch"] <= done_epoch]
  index = {json.dumps(m, sort_keys=True): i for i, m in enumerate(models)}
  diverged = {}
  for r in rows:
    if r.get("diverged"):
      i = index[json.dumps({k: r[k] for k in models[0]}, sort_keys=True)]
      diverged[i if grid else models[i]["seed"]] = r["epoch"]
  wall = max((r["wall_seconds"] for r in rows), default=0.0)
  update(done_epoch)

  resume = (lambda like: checkpoints.restore(ckpt, like=like)) if done_epoch else None
  status, state = "done", None
  for record in iterate_training(spec.config, data, loss_fn=spec.loss_fn,
                                 predict_fn=spec.predict_fn, seeds=spec.seeds, mesh=mesh,
                                 eval_fn=spec.eval_fn, resume=resume,
                                 learning_rates=spec.learning_rates, loss_params=spec.loss_params,
                                 init_params=spec.init_params):
    wall += record.seconds
    state = record.state
    new_rows = []
    for i, model in enumerate(models):
      key = i if grid else model["seed"]
      if key in diverged:
        continue
      row = {"run": spec.run_id, **model, "epoch": record.epoch}
      row.update({k: _value(v[i]) for k, v in record.metrics.items()})
      row.update({"epoch_seconds": record.seconds, "wall_seconds": wall,
                  "compile_seconds": record.compile_seconds})
      if record.diverged[i] or not math.isfinite(row["train_loss"]):
        row["diverged"] = True
        diverged[key] = record.epoch
      new_rows.append(row)
    rows.extend(new_rows)
    _write_rows(rows_path, rows)
    if len(diverged) == len(models):
      status = "diverged"
    elif record.epoch < spec.config.epochs:
      checkpoints.save(ckpt, record.epoch, record.state)
    update(1)
    if on_epoch is not None:
      on_epoch(spec, new_rows)
    if status == "diverged":
      update(spec.config.epochs - record.epoch)
      break

  tested = final = None
  if test is not None:
    tested = _final_eval(spec, state, test, also)
    if outputs.is_writer():
      np.savez_compressed(test_npz, **tested)
  if spec.keep_final:
    from jaxloss.train import sharding  # pylint: disable=import-outside-toplevel

    final = sharding.to_host(state.params)  # a collective with several processes
    if outputs.is_writer():
      np.savez(final_npz, **_flat(final))
  outputs.write_json(result_json, {"status": status, "diverged": diverged, "wall_seconds": wall,
                                  "epochs": max((r["epoch"] for r in rows), default=0)})
  distributed.barrier(f"run {spec.run_id}: finished")
  if outputs.is_writer():
    shutil.rmtree(ckpt, ignore_errors=True)
  return RunResult(spec.run_id, status, rows, diverged, wall, done_epoch, models, tested, final)
