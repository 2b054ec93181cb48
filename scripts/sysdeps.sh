#!/usr/bin/env bash
# Install the Debian packages that the browser test, the lab, the real-Prometheus
# round trip (tests/test_pull_real_prometheus.py) and the Spark rollups
# (tests/test_rollup_engines.py: a Java runtime for PySpark) need, when
# they are missing and we are root. Never fails the build: tests that need a
# missing package skip and say why.
set -u
want=(chromium memcached golang-go golang-github-bradfitz-gomemcache-dev iproute2 procps prometheus
      openjdk-17-jre-headless)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "sysdeps: missing Debian packages (${missing[*]}); not root, so the tests that need them will skip" >&2
  exit 0
fi
echo "sysdeps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The tests start their own memcached and prometheus (by PID, prometheus on a free
# port): no package's service is started by the install (policy-rc.d 101 = "not now"),
# and the prometheus we install is kept from starting at boot too.
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
fi
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || echo "sysdeps: apt-get install failed for ${missing[*]}; dependent tests will skip" >&2
[ "$ours" = 1 ] && rm -f "$policy"
case " ${missing[*]} " in
  *" prometheus "*)
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi ;;
esac
exit 0
