"""Adapters to external systems: Asterisk, the simulated switch, storage."""
