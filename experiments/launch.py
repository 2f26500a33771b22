"""Starts N local processes of one command as a single multi-process JAX run.

  python -m experiments.launch --processes 2 -- python -m experiments.zoo --quick

Each process gets the environment that `jaxloss.train.distributed.initialize`
reads (``JAX_COORDINATOR_ADDRESS`` on a free local port, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``), so the scripts of `experiments` train as one program over
the devices of all processes, and process 0 writes the results.
``--devices-per-process K`` gives each process K virtual CPU devices
(``--xla_force_host_platform_device_count``), to try a multi-device run on one
CPU. Process 0's output passes through; the others' lines go to stderr, prefixed
``[p<i>]``. When a process fails, the others are stopped, and the launcher
exits with the failed process's status (128 + N for one killed by signal N);
Ctrl-C or SIGTERM to the launcher is passed on to every process.

Every process sees all of the machine's accelerators, so on one host with GPUs
run a single process (it uses them all); the launcher is for trying several
processes on CPU. On a cluster, set the three variables yourself (see the
README), one process per host or per accelerator.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Sequence

__all__ = ["free_port", "launch", "main"]


def free_port() -> int:
  """A TCP port that was free on localhost a moment ago."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(base: dict, index: int, processes: int, port: int, devices: int | None) -> dict:
  env = {**base, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
         "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(index)}
  if devices is not None:
    flags = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count"))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
  return env


def _relay(stream, index: int) -> None:
  for line in iter(stream.readline, b""):
    sys.stderr.buffer.write(f"[p{index}] ".encode() + line)
    sys.stderr.buffer.flush()


class _Stopped(Exception):
  """The launcher itself got SIGTERM."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def launch(command: Sequence[str], processes: int, *, devices_per_process: int | None = None,
           port: int | None = None, grace_seconds: float = 10.0) -> int:
  """Runs `command` as `processes` cooperating processes; their exit status (0 if all ok).

  The first process to fail decides the status (128 + N for a process killed by
  signal N); the others are then sent SIGTERM (SIGKILL after `grace_seconds`).
  Ctrl-C, or SIGTERM to this process, is passed on to every process.
  """
  port = free_port() if port is None else port
  procs, relays = [], []
  for i in range(processes):
    env = _env(dict(os.environ), i, processes, port, devices_per_process)
    if i == 0:
      procs.append(subprocess.Popen(list(command), env=env))  # pylint: disable=consider-using-with
    else:
      proc = subprocess.Popen(list(command), env=env, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                              stderr=subprocess.STDOUT)
      relay = threading.Thread(target=_relay, args=(proc.stdout, i), daemon=True)
      relay.start()
      procs.append(proc)
      relays.append(relay)

  def stop(signum=signal.SIGTERM):
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)
    deadline = time.monotonic() + grace_seconds
    for p in procs:
      try:
        p.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()

  def on_sigterm(signum, frame):
    del frame
    raise _Stopped(signum)

  main_thread = threading.current_thread() is threading.main_thread()  # signals: main only
  previous = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
  status = 0
  try:
    while None in [p.poll() for p in procs]:  # a list: poll every process, every time
      failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
      if failed:
        status = failed[0]
        stop()
        break
      time.sleep(0.05)
  except KeyboardInterrupt:
    stop(signal.SIGINT)
    status = -signal.SIGINT
  except _Stopped as stopped:
    stop(signal.SIGTERM)
    status = -stopped.signum
  finally:
    if main_thread:
      signal.signal(signal.SIGTERM, previous)
  if status == 0:
    status = next((p.returncode for p in procs if p.returncode), 0)
  for relay in relays:
    relay.join(timeout=5)
  return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as a shell


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.launch",
      description="Run a command as N local processes of one multi-process JAX run "
                  "(the scripts of experiments train over the devices of all of them).",
      epilog="example: python -m experiments.launch --processes 2 --devices-per-process 2 "
             "-- python -m experiments.zoo --quick --out runs/zoo_2p")
  parser.add_argument("--processes", type=int, required=True,
                      help="number of processes to start (>= 1)")
  parser.add_argument("--devices-per-process", type=int, default=None,
                      help="virtual CPU devices per process (sets JAX_PLATFORMS=cpu and "
                           "--xla_force_host_platform_device_count; default: each process "
                           "sees the machine's devices, so with GPUs run one process)")
  parser.add_argument("--port", type=int, default=None,
                      help="coordinator port on localhost (default: a free one)")
  parser.add_argument("command", nargs=argparse.REMAINDER,
                      help="the command, after --, e.g. -- python -m experiments.compare --quick")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("no command given: put it after --, e.g. -- python -m experiments.compare")
  if args.processes < 1:
    parser.error(f"--processes: must be >= 1, got {args.processes}")
  if args.devices_per_process is not None and args.devices_per_process < 1:
    parser.error(f"--devices-per-process: must be >= 1, got {args.devices_per_process}")
  return launch(command, args.processes, devices_per_process=args.devices_per_process,
                port=args.port)


if __name__ == "__main__":
  sys.exit(main())
