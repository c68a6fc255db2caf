"""The ``synergraph`` command-line interface (Click)."""
