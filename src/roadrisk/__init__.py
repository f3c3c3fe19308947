"""roadrisk: one road-accident-risk trainer, run the same way in every environment."""

__version__ = "0.1.0"
