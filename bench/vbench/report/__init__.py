"""The report: docs/benchmarks.md (markdown), the goals table and ratios (derived), the PNG
plots, the console summary, and loading a results JSON for --from-json."""
