"""Flower ClientApp of ACL-ECG: local pretraining on the site's own ECGs."""
