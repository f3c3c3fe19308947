"""``roadrisk sweep``: many members on fixed folds, spread over one executor (docs/sweep.md)."""
