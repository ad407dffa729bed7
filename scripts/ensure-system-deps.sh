#!/usr/bin/env bash
# The e2e suite needs Debian's Chromium (Playwright never downloads a browser here),
# the Redis tests need redis-server and the deployment test (test/server/nginx.test.ts)
# needs nginx. Install whichever is missing; all three come
# from Debian's packages. Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
# The Redis Cluster tests create their cluster with redis-cli (Debian: redis-tools, a dependency of redis-server).
command -v redis-cli >/dev/null 2>&1 || [ -x /usr/bin/redis-cli ] || need+=(redis-tools)
# Debian installs nginx in /usr/sbin, not on a normal user's PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# The tests start their own nginx and redis-server; the packages' services must not
# start (nginx would take port 80, and fail the install where 80 is taken).
# policy-rc.d exit 101 = "action forbidden" (invoke-rc.d), only while installing.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
