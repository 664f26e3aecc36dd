"""Shared test settings: Hypothesis profiles and the shared data root.

``make test`` runs the ``default`` profile (a few examples per fuzz test, a few
hundred in all); ``pytest --hypothesis-profile=long`` runs many more for a
deeper search.  Fuzz tests never touch the network and never run for long.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long", max_examples=400, deadline=None, derandomize=False, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The real datasets (never copied into the repository): $MEMNETS_DATA or ../shared/data.
SHARED_DATA = Path(os.environ.get("MEMNETS_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")
