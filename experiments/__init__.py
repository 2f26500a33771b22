"""Experiments on full MNIST built on jaxloss and jaxloss.train (run as ``python -m experiments.NAME``)."""
