"""Evaluation metrics of the applications (slot F1, perplexity, ...), one module each."""
