#!/usr/bin/env bash
# test.sh: the whole test suite, as CI runs it (.ci/run).
#   1. installs missing Debian packages (scripts/deps.sh) and the npm packages
#      (npm ci, from package-lock.json);
#   2. starts a throwaway PostgreSQL server on a free loopback port (scripts/pg.sh),
#      stopped when this script ends: every integration test runs on SQLite and on it;
#   3. builds in build/ (RelWithDebInfo, -Wall -Wextra) and runs ctest;
#   4. builds in build-asan/ with AddressSanitizer + UBSan and runs ctest again.
# Exits non-zero if any build or any test fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${MQCHAT_JOBS:-2}

bash scripts/deps.sh
# The JavaScript packages the tests use, exactly as package-lock.json pins them.
npm ci --no-audit --no-fund --loglevel=error

# The PostgreSQL server the it.pg.* / unit.pg.* tests use (each test makes its own database).
PG_DIR=$(mktemp -d /tmp/mqchat-test-pg-XXXXXX)
trap 'bash "$ROOT/scripts/pg.sh" stop "$PG_DIR" >/dev/null 2>&1 || true' EXIT
MQCHAT_TEST_PG=$(bash scripts/pg.sh start "$PG_DIR")
export MQCHAT_TEST_PG
echo "== PostgreSQL for the tests: $MQCHAT_TEST_PG"

status=0

run_suite() {
	local dir=$1; shift
	echo "== configure $dir ($*)"
	cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" || return 1
	echo "== build $dir"
	cmake --build "$ROOT/$dir" -j"$JOBS" || return 1
	echo "== test $dir"
	(cd "$ROOT/$dir" && ctest --output-on-failure -j2) || return 1
}

if ! run_suite build -DMQCHAT_SANITIZE=OFF; then
	echo "test.sh: FAILED in build/" >&2
	status=1
fi
if ! run_suite build-asan -DMQCHAT_SANITIZE=ON; then
	echo "test.sh: FAILED in build-asan/ (sanitizer build)" >&2
	status=1
fi

if [ $status -eq 0 ]; then
	echo "test.sh: all tests passed (build/ and build-asan/)"
fi
exit $status
