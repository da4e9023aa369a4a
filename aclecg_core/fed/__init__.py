"""Flower-free logic of the federated run: arrays, partitioning, site data, training, run folders.

The Flower apps (``client``, ``server``) and ``simulation`` are thin wrappers over this package.
May import ``data``, ``method`` and ``evaluation``; never Flower nor the apps.
"""
