"""The benchmark behind `make bench` (bench/run.py is its entry point): data, peers, sections,
machine facts and the report, one module each."""
