"""Flower-free logic of the federated run: arrays, partitioning, site data, training, run folders.

The Flower apps (``client``, ``server``) and ``simulation`` are thin wrappers over this package.
"""
