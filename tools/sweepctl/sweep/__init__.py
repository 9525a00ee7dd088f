"""From a sweep spec to trials: expansion, derived parameters, trial identity."""
