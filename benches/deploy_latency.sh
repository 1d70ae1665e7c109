#!/usr/bin/env bash
# Deploy latency: publish a bundle on the control topic → applied by both
# members of a consumer group (librdkafka's mock cluster, in process), while
# 2,000 events/s flow. Usage: bash benches/deploy_latency.sh [DEPLOYS]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -p kafka --example deploy_latency -- "${1:-10}"
