"""Notifiers: whatever is told about transitions once they are stored."""
