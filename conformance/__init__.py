"""The official MCP conformance suite, run against this project's servers (``python -m conformance.run``)."""
