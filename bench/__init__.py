"""Benchmarks of the mcp-tenants servers; run with ``bench/run`` (see bench/README.rst)."""
