"""Alerts: rules, the lifecycle (triggered -> acknowledged -> resolved, escalated), silences,
notifications."""
