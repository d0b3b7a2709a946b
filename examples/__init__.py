"""Importable examples (custom expert factories)."""
