"""Python client for hookline."""
