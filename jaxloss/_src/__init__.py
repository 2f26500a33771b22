"""The private implementation of jaxloss; the public names are re-exported by `jaxloss`."""
