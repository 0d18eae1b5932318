"""A Django project whose AUTH_USER_MODEL is its own: e-mail log-in, UUID keys."""
