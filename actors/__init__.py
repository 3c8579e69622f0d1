"""Dramatiq: the broker built from settings, the export actor and the worker pool."""
