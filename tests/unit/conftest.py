"""Hypothesis settings for the unit suite: property tests check correctness, not speed,
so the timing health checks (which fail on a loaded CI machine) are off."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "oned",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("oned")
