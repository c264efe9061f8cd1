"""Cross-encoder teachers: training, rescoring candidates."""
