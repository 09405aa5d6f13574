#!/bin/bash
# Integration tests: real gustd processes (from $GUST_BUILD, default build-asan) driven over
# HTTP and the gust CLI by pytest. Needs root. Extra arguments go to pytest
# (e.g. -k scheduler, -x). Exit status is pytest's.
set -u
cd "$(dirname "$0")/.."
export GUST_BUILD=${GUST_BUILD:-build-asan}
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@"
