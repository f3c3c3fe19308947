"""``roadrisk tune``: Optuna search over one model's parameters, each trial a sweep member (runner.py)."""
