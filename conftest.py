"""Settings that must be in place before scipy or scikit-learn is imported."""

import os

# scikit-learn runs its array API estimator checks (torch, array-api-strict) only
# when scipy's array API support is switched on, which must happen before scipy is
# first imported; this root conftest is loaded before any test or doctest module.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
