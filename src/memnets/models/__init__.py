"""Whole models for the applications (memory networks, taggers, language models, ...).

Each model lives in its own module; import it by its full path, e.g.
``from memnets.models.memn2n import MemN2N``.  This package may import
:mod:`memnets.layers` and the leaves (cells, data, metrics, config, figures,
errors); never tasks or train (``docs/architecture.md``).
"""
