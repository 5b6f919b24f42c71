#!/usr/bin/env bash
# Runs the test suite once per Keras backend (tensorflow, jax, torch) and
# fails if any of them fails. Extra arguments go to pytest, e.g. `-x -k sampling`.
# BACKENDS="jax" bash tests/run.sh   runs one backend only.
# Each pass runs on two pytest-xdist workers, a test file per worker at a time
# (TEST_WORKERS=1 runs it in one process); PyTorch's pass gives each worker one
# OpenMP thread, as two workers' spinning threads slow each other down.
# JAX keeps its compiled programs in a cache folder for the run, so that a
# child process compiling what another already compiled reads it instead.
# The tests marked any_backend (their result does not depend on the backend)
# run with the first backend only.
set -u
cd "$(dirname "$0")/.."
status=0
workers=${TEST_WORKERS:-2}
parallel=
if [ "$workers" -gt 1 ]; then parallel="-n $workers --dist loadfile"; fi
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=${JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES:-0}
once_done=
for backend in ${BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend"
  threads=
  if [ "$backend" = torch ] && [ -n "$parallel" ]; then threads="OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}"; fi
  env $threads KERAS_BACKEND=$backend KERAS_VAE_ONCE_DONE=$once_done \
    python -m pytest -p no:cacheprovider $parallel "$@" || status=1
  once_done=1
done
exit $status
