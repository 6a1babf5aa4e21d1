"""The HTTP routes, one module per protocol or concern; each parses with its codec and calls
``Inference`` (or the registry, the log) with plain calls."""
