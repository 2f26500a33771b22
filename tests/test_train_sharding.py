"""Training over 4 (virtual CPU) devices, data or model parallel, equals one device.

XLA_FLAGS must be set before JAX is imported, so the check runs in a subprocess
(tests/_train_sharding_worker.py).
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("flax")

# These tests train models (seconds each): part of the full suite, not of the quick check.
pytestmark = pytest.mark.slow

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_train_sharding_worker.py")


def test_sharded_training_equals_single_device():
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  env["XLA_FLAGS"] = flags.strip()
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, WORKER], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  assert "SHARDING OK" in proc.stdout
