"""Integrations with web frameworks (Django, FastAPI, Flask), each behind its own extra."""
