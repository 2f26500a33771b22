"""Shared pytest configuration for jaxloss.

* ``jax_numpy_rank_promotion="raise"``: implicit rank broadcasting is a bug
  magnet, so every test runs with it forbidden.
* A persistent XLA compilation cache per test process (see below).
* The ``x64`` fixture enables float64 for one test (float64 references and
  `jax.test_util.check_grads` need it); loss test modules use it for all tests
  with ``pytestmark = pytest.mark.usefixtures("x64")``.
* One Hypothesis profile, ``"jaxloss"``, registered here and loaded for every
  test (no test sets its own): derandomized (the same examples on every run and
  machine), no deadline (the first call of a test compiles), and few examples
  (each example of a property test sweeps many losses, and every new shape
  compiles). ``JAXLOSS_HYPOTHESIS_EXAMPLES=200`` runs a deeper search.
"""

import atexit
import os
import shutil
import sys
import tempfile

import hypothesis
import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

hypothesis.settings.register_profile(
    "jaxloss",
    max_examples=int(os.environ.get("JAXLOSS_HYPOTHESIS_EXAMPLES", "15")),
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("jaxloss")

# A persistent XLA compilation cache for this test process (each xdist worker has
# its own): resume tests rerun the very program an earlier run compiled (several
# CPU seconds each), and the cache serves it again. Only programs that took at
# least 0.5 s to compile are stored, so the many tiny jitted ops skip the disk.
# Set before any test compiles: JAX reads the setting at its first compilation.
_XLA_CACHE_DIR = tempfile.mkdtemp(prefix="jaxloss-tests-xla-cache-")
atexit.register(shutil.rmtree, _XLA_CACHE_DIR, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.fixture(scope="session")
def mnist_dir():
  """The folder with the four original MNIST .gz files, or skip."""
  path = os.environ.get("JAXLOSS_MNIST_DIR")
  if not path:
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "mnist"))
    path = candidate if os.path.isdir(candidate) else None
  if not path or not os.path.isdir(path):
    pytest.skip("MNIST files not found: set JAXLOSS_MNIST_DIR to the folder with the .gz files")
  return path


@pytest.fixture(scope="session")
def _mnist_memo():
  return {}


@pytest.fixture
def mnist_loaded_once(mnist_dir, monkeypatch, _mnist_memo):
  """Makes `jaxloss.train.load_mnist` read MNIST once per test session (and worker).

  The end-to-end tests call a script's ``main`` several times; each call would
  read both splits through TFDS again (about 2 s, plus TensorFlow's import the
  first time). The cached arrays are made read-only, so a script that writes
  into its input fails loudly instead of corrupting the tests after it. The
  real loader keeps its own tests (`test_train_data.py`).
  """
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  real_load = jt.load_mnist

  def load_once(*, mnist_dir=None, data_dir=None):
    key = (None if mnist_dir is None else os.fspath(mnist_dir),
           None if data_dir is None else os.fspath(data_dir))
    if key not in _mnist_memo:
      data = real_load(mnist_dir=mnist_dir, data_dir=data_dir)
      for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        array.flags.writeable = False
      _mnist_memo[key] = data
    return _mnist_memo[key]

  monkeypatch.setattr(jt, "load_mnist", load_once)
  benchmark = sys.modules.get("experiments.benchmark")  # imports the loader by name
  if benchmark is not None:
    monkeypatch.setattr(benchmark, "load_mnist", load_once)
  return mnist_dir
