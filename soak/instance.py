"""What each soak instance serves: `app.create_app()` with a short sweep interval.

The reconcile interval is a YAML setting without an environment variable, and the
soak needs the sweep every few seconds rather than every minute; everything else
comes from the environment exactly as for `hypercorn app:app`.
"""

from __future__ import annotations

import os
from dataclasses import replace

import path_setup  # noqa: F401  (the project root on sys.path, as app.py does)
from app import create_app  # (app.py also builds its own `app`; it is not served)
from config import load_settings

_settings = load_settings()
_settings = replace(
    _settings,
    reconcile=replace(
        _settings.reconcile,
        interval_seconds=float(os.environ.get("SOAK_SWEEP_SECONDS", "2")),
    ),
)
app = create_app(_settings)
