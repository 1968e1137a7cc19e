"""Benchmarks: trio-mcp-sse against the official MCP Python SDK, same client, same run.

``python -m benchmarks.run`` (``make bench``) starts each server under test as a
subprocess on a free loopback port, drives it with the load generator in
:mod:`benchmarks.loadgen` (a separate process, so client and server never share
a core's time slice), and prints one table.  See ``docs/performance.md``.
"""
