"""jaxloss experiments: one harness (harness.py) and one small module per question."""
