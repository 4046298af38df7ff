"""The device simulator: realistic signals, anomaly injection, scenarios."""
