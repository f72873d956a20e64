"""Clients for the upstream APIs."""
