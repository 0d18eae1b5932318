"""Integrations with web frameworks, each behind an extra: django, fastapi, flask."""
