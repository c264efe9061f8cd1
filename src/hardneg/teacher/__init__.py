"""Cross-encoder teachers: the scorer (``scorer.py``) and rescoring candidates (``rescore.py``).

Below mining: :mod:`hardneg.mine` may rescore with a teacher, never the reverse.
Training a teacher is :mod:`hardneg.train.reranker`.
"""
