"""The ACL-ECG method: augmentations, encoder, contrastive losses, pretraining, checkpoints.

May import ``aclecg_core.data``; never evaluation, federation or report code.
"""
