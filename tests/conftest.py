"""Shared pytest configuration for jaxloss.

* ``jax_numpy_rank_promotion="raise"``: implicit rank broadcasting is a bug
  magnet, so every test runs with it forbidden.
* XLA compiles for speed of compilation, not of execution (see
  `_compile_for_tests`): the tests run thousands of tiny programs once each.
* A persistent XLA compilation cache shared by the test processes (see below).
* The ``x64`` fixture enables float64 for one test (float64 references and
  `jax.test_util.check_grads` need it); loss test modules use it for all tests
  with ``pytestmark = pytest.mark.usefixtures("x64")``.
* The ``jitted_public_api`` fixture runs the public losses and metrics under
  `jax.jit` for the reference modules that check values (`tests/_compiled.py`).
* One Hypothesis profile, ``"jaxloss"``, registered here and loaded for every
  test (no test sets its own): derandomized (the same examples on every run and
  machine), no deadline (the first call of a test compiles), and few examples
  (each example of a property test sweeps many losses, and every new shape
  compiles). ``JAXLOSS_HYPOTHESIS_EXAMPLES=200`` runs a deeper search.
"""

import atexit
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile

# Compile-time settings for the whole test session, and for the processes it
# starts (the environment is inherited). Most of the suite's time is XLA
# compiling programs that then run once on a few numbers: op-by-op calls
# compile each jax.numpy function per shape and dtype, and every test shape is
# new. Two settings halve that on CPU (measured on 2 cores: the focal tests
# 103 s -> 55 s, the trainer tests 56 s -> 27 s):
# * JAX_DISABLE_MOST_OPTIMIZATIONS: XLA's backend at -O0, without LLVM's
#   expensive passes. Read by JAX at import, so set before `import jax`.
# * --xla_cpu_use_fusion_emitters=false: the CPU backend's older, cheaper
#   code generator for fusions. An unknown XLA flag aborts the process, so it
#   is used only where a child process accepts it (a future jaxlib may drop it).
# Both change how XLA compiles, not the math: results may move by float
# rounding, and no test depends on one compiler's rounding (values compare
# with tolerances, or to the same program run twice).
_FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _compile_for_tests() -> None:
  os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_use_fusion_emitters" in flags or os.environ.get("JAXLOSS_TEST_XLA_PROBED"):
    return  # set by the user, or probed by the parent process (an xdist controller)
  os.environ["JAXLOSS_TEST_XLA_PROBED"] = "1"
  probe = subprocess.run(
      [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"],
      env={**os.environ, "XLA_FLAGS": f"{flags} {_FAST_COMPILE_FLAG}".strip(),
           "JAX_PLATFORMS": "cpu"},
      capture_output=True, timeout=120, check=False)
  if probe.returncode == 0:
    os.environ["XLA_FLAGS"] = f"{flags} {_FAST_COMPILE_FLAG}".strip()


_compile_for_tests()

import hypothesis  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

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

# A persistent XLA compilation cache for this test session, shared by the xdist
# workers: resume tests rerun the very program an earlier run compiled, and
# tests on both workers train the same small models, so a program one worker
# compiled (seconds) is read back by the other. Only programs that took at
# least 0.5 s to compile are stored, so the many tiny jitted ops skip the disk.
# The first process (the xdist controller, or the only one) makes the folder
# and removes it at exit; the workers it starts inherit the variable. Set before
# any test compiles: JAX reads the setting at its first compilation.
if "JAXLOSS_TEST_XLA_CACHE_DIR" not in os.environ:
  os.environ["JAXLOSS_TEST_XLA_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxloss-tests-xla-cache-")
  atexit.register(shutil.rmtree, os.environ["JAXLOSS_TEST_XLA_CACHE_DIR"], ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", os.environ["JAXLOSS_TEST_XLA_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
# The processes the tests start (multi-process runs, virtual-device workers, CLI
# runs) share it too: JAX reads these variables when it starts. A resumed
# multi-process run then reuses the programs its first launch compiled.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["JAXLOSS_TEST_XLA_CACHE_DIR"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


@pytest.fixture
def jitted_public_api(monkeypatch):
  """Replaces every public loss and metric on `jaxloss` by its jitted wrapper.

  See `tests/_compiled.py`: the reference modules check values, and one XLA
  program per function and shape compiles many times faster than op-by-op
  execution. A test module opts in with
  ``pytestmark = pytest.mark.usefixtures("x64", "jitted_public_api")``.
  """
  import inspect  # pylint: disable=import-outside-toplevel
  import jaxloss  # pylint: disable=import-outside-toplevel
  import _compiled  # pylint: disable=import-outside-toplevel
  for name in dir(jaxloss):
    value = getattr(jaxloss, name)
    if name.startswith("_") or name in _compiled.NOT_WRAPPED or not inspect.isfunction(value):
      continue
    monkeypatch.setattr(jaxloss, name, _compiled.compiled(value))


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.fixture(scope="session")
def mnist_dir():
  """The folder with the four original MNIST .gz files, or skip."""
  path = _find_mnist_dir()
  if path is None:
    pytest.skip("MNIST files not found: set JAXLOSS_MNIST_DIR to the folder with the .gz files")
  return path


# MNIST for the whole test session, shared by the xdist workers like the
# compilation cache above. The first process (the controller) starts a child
# process at once that prepares MNIST through TFDS from the four .gz files into a
# fresh session folder (about 30 s; so the preparation itself is tested on every
# run, never in the user's own data dir) and saves the arrays as one .npz. It
# holds a file lock meanwhile; the `prepared_mnist` fixture waits on that lock,
# so the workers run other tests during the preparation and never import
# TensorFlow just to read MNIST back. Without the child (no MNIST files), the
# fixture prepares under the same lock itself.
_PREPARE = """
import os, sys
import numpy as np
from jaxloss.train import data
mnist_dir, data_dir, npz = sys.argv[1:4]
m = data.load_mnist(mnist_dir=mnist_dir, data_dir=data_dir)
np.savez(npz + '.tmp.npz', train_images=m.train_images, train_labels=m.train_labels,
         test_images=m.test_images, test_labels=m.test_labels)
os.replace(npz + '.tmp.npz', npz)
"""


def _find_mnist_dir():
  path = os.environ.get("JAXLOSS_MNIST_DIR")
  if not path:
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "mnist"))
    path = candidate if os.path.isdir(candidate) else None
  return path if path and os.path.isdir(path) else None


def _start_mnist_preparation(folder: str) -> None:
  import fcntl  # pylint: disable=import-outside-toplevel

  mnist_dir = _find_mnist_dir()
  if mnist_dir is None:
    return
  fd = os.open(os.path.join(folder, "lock"), os.O_CREAT | os.O_WRONLY)
  fcntl.flock(fd, fcntl.LOCK_EX)  # held by the child (same open file) until it exits
  child = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-c", _PREPARE, mnist_dir, os.path.join(folder, "tfds"),
       os.path.join(folder, "mnist.npz")], pass_fds=(fd,), stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL)
  os.close(fd)

  def stop():
    if child.poll() is None:
      child.kill()
    child.wait()

  atexit.register(stop)  # runs before the folder's removal (registered earlier)


if "JAXLOSS_TEST_TFDS_DIR" not in os.environ:
  os.environ["JAXLOSS_TEST_TFDS_DIR"] = tempfile.mkdtemp(prefix="jaxloss-tests-tfds-")
  atexit.register(shutil.rmtree, os.environ["JAXLOSS_TEST_TFDS_DIR"], ignore_errors=True)


def pytest_configure(config):
  """The first process starts the MNIST preparation, unless the MNIST tests are deselected."""
  if (hasattr(config, "workerinput") or "not mnist" in (config.option.markexpr or "")
      or os.environ.get("JAXLOSS_TEST_MNIST_STARTED")):
    return
  os.environ["JAXLOSS_TEST_MNIST_STARTED"] = "1"
  _start_mnist_preparation(os.environ["JAXLOSS_TEST_TFDS_DIR"])


@pytest.fixture(scope="session")
def prepared_mnist(mnist_dir):
  """``(data_dir, Mnist)``: MNIST prepared once per test session (see above)."""
  import fcntl  # pylint: disable=import-outside-toplevel

  from jaxloss.train import data as data_lib  # pylint: disable=import-outside-toplevel

  folder = os.environ["JAXLOSS_TEST_TFDS_DIR"]
  data_dir, npz = os.path.join(folder, "tfds"), os.path.join(folder, "mnist.npz")
  with open(os.path.join(folder, "lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # waits while the child (or another worker) prepares
    try:
      if not os.path.exists(npz):
        mnist = data_lib.load_mnist(mnist_dir=mnist_dir, data_dir=data_dir)
        np.savez(npz + ".tmp.npz", **dataclasses.asdict(mnist))
        os.replace(npz + ".tmp.npz", npz)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  with np.load(npz) as arrays:
    mnist = data_lib.Mnist(**{k: arrays[k] for k in arrays.files})
  for array in (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels):
    array.flags.writeable = False
  return data_dir, mnist


@pytest.fixture(scope="session")
def _mnist_memo():
  return {}


@pytest.fixture
def mnist_loaded_once(mnist_dir, prepared_mnist, monkeypatch, _mnist_memo):
  """Makes `jaxloss.train.load_mnist` read MNIST once per test session (and worker).

  The end-to-end tests call a script's ``main`` several times; each call would
  read both splits through TFDS again (about 2 s, plus TensorFlow's import the
  first time). A call without ``data_dir`` gets the session's prepared copy
  (`prepared_mnist`). The cached arrays are read-only, so a script that writes
  into its input fails loudly instead of corrupting the tests after it. The
  real loader keeps its own tests (`test_train_data.py`).
  """
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  real_load = jt.load_mnist
  _, session_mnist = prepared_mnist
  _mnist_memo.setdefault((None, None), session_mnist)

  def load_once(*, mnist_dir=None, data_dir=None):
    key = (None if mnist_dir is None else os.fspath(mnist_dir),
           None if data_dir is None else os.fspath(data_dir))
    if key[1] is None:
      key = (None, None)
    if key not in _mnist_memo:
      data = real_load(mnist_dir=mnist_dir, data_dir=data_dir)
      for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        array.flags.writeable = False
      _mnist_memo[key] = data
    return _mnist_memo[key]

  monkeypatch.setattr(jt, "load_mnist", load_once)
  return mnist_dir


# XLA compilations per test, for work on the suite's time. Most of the suite's
# time is compiling, and compile counts do not depend on the machine's load the
# way seconds do: ``JAXLOSS_TEST_COMPILES=PATH`` writes, per test process,
# ``PATH.<worker>.json`` with each test's number of backend compilations and
# the seconds of tracing, lowering and compiling (jax.monitoring events); `tests/_compiles.py` sums them by file.
_COMPILES_PATH = os.environ.get("JAXLOSS_TEST_COMPILES")
_compiles = {"count": 0, "seconds": 0.0}
_compiles_by_test: dict = {}


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


def _count_compile(event: str, seconds: float, **_) -> None:
  """Counts backend compilations; the seconds include tracing and lowering to MLIR."""
  if event in _COMPILE_EVENTS:
    _compiles["count"] += event == _COMPILE_EVENTS[-1]
    _compiles["seconds"] += seconds


if _COMPILES_PATH:
  jax.monitoring.register_event_duration_secs_listener(_count_compile)

  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
    count, seconds = _compiles["count"], _compiles["seconds"]
    yield
    _compiles_by_test[item.nodeid] = [_compiles["count"] - count,
                                      round(_compiles["seconds"] - seconds, 4)]

  def pytest_sessionfinish(session):  # pylint: disable=unused-argument
    import json  # pylint: disable=import-outside-toplevel
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if _compiles_by_test:
      with open(f"{_COMPILES_PATH}.{worker}.json", "w") as f:
        json.dump(_compiles_by_test, f, indent=0)
