"""Shared pytest configuration for jaxloss.

* ``jax_numpy_rank_promotion="raise"``: implicit rank broadcasting is a bug
  magnet, so every test runs with it forbidden.
* The ``x64`` fixture enables float64 for one test (float64 references and
  `jax.test_util.check_grads` need it); loss test modules use it for all tests
  with ``pytestmark = pytest.mark.usefixtures("x64")``.
"""

import os

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


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
