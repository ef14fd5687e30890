"""`make bench`: replication, streaming and mart speed measured side by side (see docs/bench.md)."""
