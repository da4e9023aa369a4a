"""Flower ServerApp of ACL-ECG: strategy, aggregation, centralized probing, checkpoints."""
