"""Benchmarks: SQL queries per request (`bench.queries`) and load (`bench.run`)."""
