"""Keyturn: a self-hosted engine that lets AI agents act as their users."""

__version__ = "0.1.0"
