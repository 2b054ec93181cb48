#!/usr/bin/env bash
# Install the Debian packages that the browser test and the lab need, when
# they are missing and we are root. Never fails the build: tests that need a
# missing package skip and say why.
set -u
want=(chromium memcached golang-go golang-github-bradfitz-gomemcache-dev iproute2 procps prometheus)
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
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || echo "sysdeps: apt-get install failed for ${missing[*]}; dependent tests will skip" >&2
exit 0
