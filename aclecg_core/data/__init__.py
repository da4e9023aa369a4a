"""ECG data: WFDB reading, sources and layouts, labels, leads and regions, preprocessing, R-peaks,
cache, cohorts, record checks, the synthetic and GAN corpora.

Imports nothing else of the core but ``aclecg_core.settings``.
"""

import warnings

# wfdb (4.3) calls pandas' deprecated ``inplace=True`` (``set_index`` on import, ``drop`` when
# reading multi-segment records): warnings about wfdb's code, not ours, printed once per process
# (every simulated site). Silenced here, before any module of this package imports wfdb.
warnings.filterwarnings("ignore", message=r"The inplace keyword in DataFrame\.",
                        category=DeprecationWarning, module=r"wfdb(\.|$)")
