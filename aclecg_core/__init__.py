"""ACL-ECG core: data, augmentations, encoder, losses, training and evaluation.

This package never imports Flower nor the ``client``/``server``/``simulation`` apps.
"""

__version__ = "0.1.0"
