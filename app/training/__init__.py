"""Training, data validation, evaluation and registration of model versions."""
