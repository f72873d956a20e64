"""Several replicas on PostgreSQL: shards and rate-budget slots held by lease."""
