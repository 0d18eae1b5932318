"""Management commands of the kaspi_identity app."""
