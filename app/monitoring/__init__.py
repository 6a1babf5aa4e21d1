"""Application-side monitoring: the prediction log, ground-truth feedback, traffic simulation."""
