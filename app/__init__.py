"""modelserve: serve versioned scikit-learn models over HTTP, watched by Prometheus."""

__version__ = "0.1.0"
