"""Evaluation of encoders: linear probing, fine-tuning, splits and metrics (AUROC, AUPRC).

May import ``aclecg_core.data`` and ``aclecg_core.method``; never federation or report code.
"""
