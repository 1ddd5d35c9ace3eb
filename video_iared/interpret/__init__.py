"""Interpretability: attribution maps (``explain``), their metrics, the evaluation (``interpretability``), pictures."""
