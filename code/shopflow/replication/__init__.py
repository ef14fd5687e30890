"""Postgres `source` -> MySQL replica: incremental, idempotent, reconciled. Design: README.md beside this file."""
from .pipeline import JOB, ReplicationError, ReplicationRefused, TableResult, replicate

__all__ = ["JOB", "ReplicationError", "ReplicationRefused", "TableResult", "replicate"]
