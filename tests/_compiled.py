"""Public losses and metrics called through `jax.jit`, for the reference tests.

Called op by op, a loss compiles every `jax.numpy` function it uses, once per
input shape and dtype: a few dozen small XLA programs, each costing tens of
milliseconds on CPU, for every new shape a test draws. The reference modules
(float64 references, identities, properties) check *values*, so they call the
public functions through `compiled(fn)`: one XLA program per function and
shape. Array arguments are traced; every other argument (a Python number, a
string, None, a tuple) is static, so trace-time validation still sees the
hyperparameters and raises as it would unjitted. An argument that is neither
(a list) falls back to the plain call. Unjitted behaviour keeps its own tests
in `test_contract.py`.

`jitted_public_api` (a fixture in `conftest.py`) puts these wrappers in place of
the public functions on `jaxloss` for the test modules that ask for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

# The public names that are not losses or metrics of arrays: decorators,
# registry lookups, and helpers whose output is not an array.
NOT_WRAPPED = frozenset({"checked", "get", "available", "multiclass", "LossSpec"})


def _is_array(x: Any) -> bool:
  return isinstance(x, (np.ndarray, np.generic, jax.Array)) and not isinstance(x, (bool, str))


@functools.lru_cache(maxsize=None)
def _program(fn: Callable[..., Any], array_keys: tuple[int | str, ...],
             static_items: tuple[tuple[int | str, Any], ...]) -> Callable[..., Any]:
  """``jax.jit`` of `fn` with the static arguments bound; keys: positions (int) or names (str)."""

  def call(arrays):
    items = dict(static_items) | dict(zip(array_keys, arrays))
    positional = sorted(k for k in items if isinstance(k, int))
    return fn(*(items[k] for k in positional),
              **{k: v for k, v in items.items() if isinstance(k, str)})

  return jax.jit(call)


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`fn` called under `jax.jit`: arrays traced, everything else static."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    array_keys, arrays, static_items = [], [], []
    for key, value in [*enumerate(args), *sorted(kwargs.items())]:
      if _is_array(value):
        array_keys.append(key)
        arrays.append(value)
      elif isinstance(value, Hashable):
        static_items.append((key, value))
      else:
        return fn(*args, **kwargs)
    try:
      program = _program(fn, tuple(array_keys), tuple(static_items))
    except TypeError:  # a hashable-looking value that does not hash (e.g. a tuple of arrays)
      return fn(*args, **kwargs)
    return program(arrays)

  wrapper.__wrapped__ = fn
  wrapper.jaxloss_test_original = fn
  return wrapper


def original(fn: Callable[..., Any]) -> Callable[..., Any]:
  """The public function behind a `compiled` wrapper (or `fn` itself)."""
  return getattr(fn, "jaxloss_test_original", fn)
