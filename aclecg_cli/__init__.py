"""The ``aclecg`` command line: thin wrappers over ``aclecg_core``, ``simulation`` and the apps."""
