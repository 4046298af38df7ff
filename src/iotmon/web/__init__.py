"""HTTP: the app of the web role, and the small /health + /metrics app every role serves."""
