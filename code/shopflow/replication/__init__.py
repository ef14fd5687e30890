"""Postgres `source` -> MySQL replica: incremental, idempotent, reconciled. Design: README.md beside this file."""
from .pipeline import JOB, ReplicationError, TableResult, replicate

__all__ = ["JOB", "ReplicationError", "TableResult", "replicate"]
