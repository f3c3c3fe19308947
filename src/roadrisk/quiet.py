"""Keep Lightning's and pytabkit's chatter off the user's screen, but not lost.

Every fit prints tips, ``GPU available`` banners and deprecation warnings (docs/data.md, "pytabkit and dtypes"). They go
to ``library.log`` in the run directory, where someone debugging a fit can still read them.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

_LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric")


@contextlib.contextmanager
def library_output_to(path: Path):
    with open(path, "a", encoding="utf-8") as sink:
        handler = logging.StreamHandler(sink)
        saved = []
        for name in _LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            saved.append((logger, logger.handlers[:], logger.propagate))
            logger.handlers = [handler]
            logger.propagate = False
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                warnings.simplefilter("default")
                yield
        finally:
            for logger, handlers, propagate in saved:
                logger.handlers = handlers
                logger.propagate = propagate
