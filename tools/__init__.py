"""Build tooling that is not part of the installed package (the documentation site)."""
