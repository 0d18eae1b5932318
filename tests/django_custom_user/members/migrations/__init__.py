"""Migrations of the members app."""
