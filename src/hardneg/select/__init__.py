"""Selection: numpy-only filters and samplers that turn candidates into negatives."""

from hardneg.select.config import SelectionConfig
from hardneg.select.pipeline import Selection, select_negatives

__all__ = ["Selection", "SelectionConfig", "select_negatives"]
