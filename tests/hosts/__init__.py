"""Tests that run across several "hosts": network namespaces on a bridge (root only)."""
