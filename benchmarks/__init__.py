"""relaygate's benchmark harness: ``bash benchmarks/run.sh`` (see ``benchmarks/README.md``)."""
