"""``roadrisk ensemble``: blend complete runs on their out-of-fold predictions into a new run.

methods.py holds the blending arithmetic (pure functions of numbers); members.py reads and checks
the runs to blend; target.py finds the training target they were scored against; output.py writes
the new run folder; command.py puts them in order.
"""

# The CLI lists these without importing numpy or scikit-learn; methods.FITTERS must match.
METHOD_NAMES = ("caruana", "hill", "ridge")
DEFAULT_METHOD = "caruana"
