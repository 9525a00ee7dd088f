"""The trial runner: shipped in each trial's ConfigMap; imports nothing of sweepctl."""
