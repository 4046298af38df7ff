"""Users: names, roles, password hashes and session versions (table ``users``)."""
