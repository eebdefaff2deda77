"""Test data files and the scripts that make them."""
