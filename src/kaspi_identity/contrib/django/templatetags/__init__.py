"""Template tags of the kaspi_identity app."""
