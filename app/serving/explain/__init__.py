"""Exact explanations of a served version's answers (``:explain``), off the predict path.

``build`` picks a version's method (linear or TreeSHAP) and checks it on the version's own
rows; ``service.Explainers`` builds it lazily in its own thread and answers requests there.
"""
