"""``kaspi_identity_check``, ``kaspi_identity_describe``, ``kaspi_identity_unlock``."""
