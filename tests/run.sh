#!/usr/bin/env bash
# Runs every test of the workspace: unit tests of each crate and the end-to-end tests that start
# the real `meridian` binary. Installs the system tools the tests use when missing: dig, curl,
# iproute2, openssl, knotd (a zone-transfer secondary) and headless Chromium with its WebDriver
# (the console tests in tests/e2e/browser.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
# `ip netns`: multi-appliance tests put each node in its own network namespace (root needed).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# Knot DNS as a real secondary of Meridian's zones (tests/e2e/xfr.rs).
command -v knotd >/dev/null 2>&1 || need+=(knot)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo test --workspace --locked -j2
