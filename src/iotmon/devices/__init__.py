"""Devices: the seeded fleet of DESIGN.md 4.1 and its configuration."""
