"""ACL-ECG core, grouped by purpose: ``data`` (reading and preparing ECGs), ``method`` (the
contrastive method), ``evaluation`` (probing, fine-tuning, metrics), ``fed`` (Flower-free
federation logic), ``report`` (run reports); ``settings`` holds the shared config helper.

This package never imports Flower nor the ``client``/``server``/``simulation`` apps.
"""

__version__ = "0.1.0"
