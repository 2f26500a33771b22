"""Sums the per-test XLA compilations that ``JAXLOSS_TEST_COMPILES=PATH pytest`` recorded.

    JAXLOSS_TEST_COMPILES=/tmp/c python -m pytest -n 2 tests/test_metrics.py
    python tests/_compiles.py /tmp/c            # by file, most compilations first
    python tests/_compiles.py /tmp/c --tests 20 # and the 20 tests that compile most
"""

import argparse
import collections
import glob
import json


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("path", help="the JAXLOSS_TEST_COMPILES prefix")
  parser.add_argument("--tests", type=int, default=0, help="also list the N costliest tests")
  args = parser.parse_args()
  tests = {}
  for name in glob.glob(args.path + ".*.json"):
    with open(name) as f:
      tests.update(json.load(f))
  files = collections.defaultdict(lambda: [0, 0.0, 0])
  for nodeid, (count, seconds) in tests.items():
    entry = files[nodeid.split("::")[0]]
    entry[0] += count
    entry[1] += seconds
    entry[2] += 1
  print(f"{'compiles':>9} {'seconds':>8} {'tests':>6}  file")
  for name, (count, seconds, n) in sorted(files.items(), key=lambda kv: -kv[1][0]):
    print(f"{count:9d} {seconds:8.1f} {n:6d}  {name}")
  print(f"{sum(v[0] for v in files.values()):9d} "
        f"{sum(v[1] for v in files.values()):8.1f} {len(tests):6d}  total")
  for nodeid, (count, seconds) in sorted(tests.items(), key=lambda kv: -kv[1][0])[:args.tests]:
    print(f"{count:9d} {seconds:8.1f}  {nodeid}")


if __name__ == "__main__":
  main()
