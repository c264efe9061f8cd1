"""hardneg inside other training frameworks (:mod:`hardneg.integrations.sentence_transformers`)."""
