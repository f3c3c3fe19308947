"""``roadrisk ensemble``: blend complete runs on their out-of-fold predictions into a new run.

methods.py holds the blending arithmetic (pure functions of numbers); stack.py the level-2 models of
``--method stack``, raw_features.py the features they see; seeds.py averages the seeds of one member
(``--average-seeds``); members.py reads and checks the runs to blend; target.py finds the training
target they were scored against; output.py writes the new run folder; command.py puts them in order.
"""

# The CLI lists these without importing numpy or scikit-learn; methods.fitter and stack.build_model must match.
BLEND_METHOD_NAMES = ("caruana", "hill", "ridge")  # weights on the members' predictions (methods.py)
METHOD_NAMES = (*BLEND_METHOD_NAMES, "stack")  # stack: a level-2 model (stack.py)
DEFAULT_METHOD = "caruana"
STACK_MODEL_NAMES = ("ridge", "hgb", "xgb")
DEFAULT_STACK_MODEL = "ridge"  # measured best of the three on the real development sample: docs/ensemble.md, Stack
