"""Migrations of the kaspi_identity app."""
