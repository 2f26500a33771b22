"""Assertions shared by the per-loss test files (imported as a plain module)."""

import jax
import jax.numpy as jnp
import numpy as np


def assert_shift_exact(fn, z_np, shift=1e8):
  """``fn`` at ``z + shift`` equals ``fn`` at ``z`` bit for bit: value and gradient, eager and jit.

  ``z_np`` must be exact at that magnitude in float32 (checked), e.g. multiples of 8
  at 1e8. Returns ``fn(z)`` for further checks of the unshifted value.

  The value and the gradient run as one function, eagerly and as one jitted
  program (one compilation, not two); the inputs are made in NumPy (float32
  addition is exact IEEE arithmetic there too), so nothing else compiles.
  """
  z0_np = np.asarray(z_np, np.float32)
  z1_np = z0_np + np.float32(shift)
  np.testing.assert_array_equal(z1_np - np.float32(shift), z_np)  # exact inputs
  z0, z1 = jnp.asarray(z0_np), jnp.asarray(z1_np)
  weights = np.arange(1.0, z0.shape[0] + 1.0, dtype=np.float32)
  value_and_grad = jax.value_and_grad(lambda z: jnp.sum(fn(z) * weights))

  def value_and_value_and_grad(z):
    return fn(z), value_and_grad(z)

  unshifted = None
  for f in (value_and_value_and_grad, jax.jit(value_and_value_and_grad)):
    (out0, (v0, g0)), (out1, (v1, g1)) = f(z0), f(z1)
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(out0))
    assert v1.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(v1), np.asarray(v0))
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(g0))
    unshifted = out0 if unshifted is None else unshifted  # the eager value
  return unshifted


def assert_masks_hide_bad_rows(fn, z_bad, value, num_bad):
  """The rows ``[:num_bad]`` of ``z_bad`` hold NaN / +inf; the others are clean.

  ``example_mask=False`` on the bad rows gives exactly 0 there and leaves the clean
  rows as they are; a class mask hiding column 1 leaves rows 0 and 3 NaN (their
  NaN / +inf is in an unmasked class), and the other rows do not depend on what
  stands behind the mask.
  """
  n = z_bad.shape[0]
  keep = np.array([False] * num_bad + [True] * (n - num_bad))
  masked_out = np.asarray(fn(jnp.asarray(z_bad), example_mask=keep))
  assert np.all(masked_out[:num_bad] == 0.0)
  np.testing.assert_array_equal(masked_out[num_bad:], value[num_bad:])
  where = np.array([True, False, True])
  hidden = np.asarray(fn(jnp.asarray(z_bad), where=where))
  assert np.isnan(hidden[0]) and np.isnan(hidden[3])
  junk = np.asarray(fn(jnp.asarray(np.where(where, z_bad, 7.0)), where=where))
  clean = [i for i in range(n) if i not in (0, 3)]
  np.testing.assert_array_equal(hidden[clean], junk[clean])
  assert np.all(np.isfinite(hidden[clean]))
