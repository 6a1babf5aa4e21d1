"""The versioned model registry on disk; knows nothing of HTTP."""
