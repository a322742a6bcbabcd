"""The HTTP surface: dependencies (settings, verifier, limiter, the API-key check), body readers, routes."""
