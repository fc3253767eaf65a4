"""Per-process objects the resources need besides the database (set by create_app)."""

from __future__ import annotations

auth = None  # api.middleware.AuthMiddleware
settings = None  # appliance.settings.Settings
