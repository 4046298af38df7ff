"""Live statistics: windows of time buckets, a quantile sketch, trend, anomaly score, roll-up."""
