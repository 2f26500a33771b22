"""experiments.launch (starting N processes) and the environment jaxloss.train.distributed reads."""

import signal
import subprocess
import sys
import time

import pytest

from experiments import launch

pytest.importorskip("flax")

from jaxloss.train import distributed  # noqa: E402

SHOW_ENV = ("import os; print('process', os.environ['JAX_PROCESS_ID'], 'of', "
            "os.environ['JAX_NUM_PROCESSES'], 'at', os.environ['JAX_COORDINATOR_ADDRESS'], "
            "os.environ.get('XLA_FLAGS', ''), flush=True)")


def test_each_process_gets_its_id_and_one_coordinator(capfd):
  assert launch.launch([sys.executable, "-c", SHOW_ENV], 3, devices_per_process=2) == 0
  out, err = capfd.readouterr()
  assert out.count("process 0 of 3 at 127.0.0.1:") == 1  # process 0 on stdout
  assert "[p1] process 1 of 3" in err and "[p2] process 2 of 3" in err  # the others on stderr
  addresses = {line.split(" at ")[1].split()[0] for line in (out + err).splitlines()
               if " at " in line}
  assert len(addresses) == 1
  assert (out + err).count("--xla_force_host_platform_device_count=2") == 3


def test_a_failing_process_stops_the_others_and_gives_its_status():
  script = ("import os, sys, time\n"
            "if os.environ['JAX_PROCESS_ID'] == '1': sys.exit(5)\n"
            "time.sleep(60)\n")
  t0 = time.monotonic()
  assert launch.launch([sys.executable, "-c", script], 2, grace_seconds=5) == 5
  assert time.monotonic() - t0 < 30  # process 0 did not sleep its 60 s


def test_sigterm_to_the_launcher_stops_every_process():
  sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
  proc = subprocess.Popen([sys.executable, "-m", "experiments.launch", "--processes", "2",
                           "--", *sleeper])
  time.sleep(2.0)
  t0 = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=30) == 128 + signal.SIGTERM
  assert time.monotonic() - t0 < 20


def test_cli_refusals():
  for argv, message in ((["--processes", "2"], "no command given"),
                        (["--processes", "0", "--", "true"], "--processes: must be >= 1"),
                        (["--processes", "2", "--devices-per-process", "0", "--", "true"],
                         "--devices-per-process: must be >= 1")):
    proc = subprocess.run([sys.executable, "-m", "experiments.launch", *argv],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and message in proc.stderr, (argv, proc.stderr)
  ok = subprocess.run([sys.executable, "-m", "experiments.launch", "--processes", "2", "--",
                       sys.executable, "-c", "pass"], capture_output=True, timeout=60,
                      check=False)
  assert ok.returncode == 0


@pytest.mark.parametrize("env, message", [
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer"),
    ({"JAX_NUM_PROCESSES": "0"}, "must be >= 1"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2", "JAX_COORDINATOR_ADDRESS": "h:1"},
     "JAX_PROCESS_ID=2 must be in 0..1"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_PROCESS_ID=None"),
])
def test_bad_environments_are_refused_before_joining(monkeypatch, env, message):
  for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS",
               "JAXLOSS_DISTRIBUTED"):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  with pytest.raises(ValueError, match=message):
    distributed.initialize()


def test_no_description_is_one_process(monkeypatch):
  for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS",
               "JAXLOSS_DISTRIBUTED"):
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False
  monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
  assert distributed.initialize() is False
  assert distributed.process_count() == 1 and distributed.is_writer()
  distributed.barrier("alone")  # a no-op for one process
