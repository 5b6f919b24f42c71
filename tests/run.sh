#!/usr/bin/env bash
# Runs the test suite once per Keras backend (tensorflow, jax, torch) and
# fails if any of them fails. Extra arguments go to pytest, e.g. `-x -k sampling`.
# BACKENDS="jax" bash tests/run.sh   runs one backend only.
# The tests marked any_backend (their result does not depend on the backend)
# run with the first backend only.
set -u
cd "$(dirname "$0")/.."
status=0
once_done=
for backend in ${BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend KERAS_VAE_ONCE_DONE=$once_done \
    python -m pytest -p no:cacheprovider "$@" || status=1
  once_done=1
done
exit $status
