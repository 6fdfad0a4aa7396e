#!/usr/bin/env bash
# The report test renders agpo's HTML report in Debian's headless Chromium. Install it when it is
# missing and we may (root with apt-get, e.g. CI); otherwise say that the render test will skip.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the report render test ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the report render test will skip" >&2
else
  echo "warning: chromium not found and cannot be installed here; the report render test will skip" >&2
fi
exit 0
