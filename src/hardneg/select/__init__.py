"""Selection: numpy-only filters and samplers that turn candidates into negatives.

``stages.py`` declares the filters (one table) and samplers (one dict); ``pipeline.py``
runs them: filter → sample → fill short queries → gather.
"""

from hardneg.select.config import SelectionConfig
from hardneg.select.pipeline import Selection, select_negatives

__all__ = ["Selection", "SelectionConfig", "select_negatives"]
