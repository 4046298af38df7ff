"""Readings: the message contract, validation, ingestion into PostgreSQL."""
