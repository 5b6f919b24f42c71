#!/usr/bin/env bash
# Runs the test suite once per Keras backend (tensorflow, jax, torch) and
# fails if any of them fails. Extra arguments go to pytest, e.g. `-x -k sampling`.
# BACKENDS="jax" bash tests/run.sh   runs one backend only.
set -u
cd "$(dirname "$0")/.."
status=0
for backend in ${BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend python -m pytest -p no:cacheprovider "$@" || status=1
done
exit $status
