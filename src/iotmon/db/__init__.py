"""PostgreSQL: connections, migrations, partitions, the embedded server."""
