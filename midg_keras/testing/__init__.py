"""Test utilities: generated files in the exact layouts of the real datasets."""
