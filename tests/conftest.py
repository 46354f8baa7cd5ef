import os

from hypothesis import HealthCheck, settings

# CI runs on 2 cores with a time budget: a fixed, modest number of examples, no per-example deadline (a busy
# machine must not turn into a flaky failure). `HYPOTHESIS_PROFILE=thorough` searches harder on demand.
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
