"""ECG data: WFDB reading, sources and layouts, labels, leads and regions, preprocessing, R-peaks,
cache, cohorts, record checks, the synthetic and GAN corpora.

Imports nothing else of the core but ``aclecg_core.settings``.
"""
