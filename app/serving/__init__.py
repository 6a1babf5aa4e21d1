"""Serving: which versions are loaded, the input contract, batching, the one inference entry."""
