"""Datasets: where they live (:func:`data_root`), fetching them (:func:`download`),
and one reader module per dataset (``memnets.data.babi``, ``memnets.data.atis``, ...).

Import readers by their full path; this package's top level holds only the
shared utilities and imports nothing but the standard library.
"""

from memnets.data.download import download, sha256_file
from memnets.data.paths import DataError, data_root, require, user_cache_dir

__all__ = ["DataError", "data_root", "download", "require", "sha256_file", "user_cache_dir"]
