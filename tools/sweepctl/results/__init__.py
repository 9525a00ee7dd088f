"""Results read back from MLflow: the comparison table and the sensitivity analysis."""
