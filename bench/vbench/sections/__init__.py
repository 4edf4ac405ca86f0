"""The benchmark's sections, one module each. Each `bench_*` function measures, logs progress
and returns a JSON-able dict for the report."""
