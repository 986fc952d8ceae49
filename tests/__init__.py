"""The tests, one folder per package (glat_tf, glat_core, edge_runtime, export, train,
bench) and cli/ for what crosses them; shared helpers at this level."""
