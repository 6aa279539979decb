"""Logging configuration, metrics and audit events."""
