# Environment for every Flower command and daemon (sourced by the other scripts); the same values
# as FLOWER_ENV in aclecg_runtime/environment.py (tests/runtime/test_environment.py keeps them in step).
export FLWR_TELEMETRY_ENABLED=0
export FLWR_DISABLE_UPDATE_CHECK=1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0
export RAY_USAGE_STATS_ENABLED=0
