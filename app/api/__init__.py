"""Thin HTTP routes: parse, call the serving layer, shape the response."""
