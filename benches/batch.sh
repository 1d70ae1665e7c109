#!/usr/bin/env bash
# The batch path over one file, in one go: `streamctl run` with 1 and 2
# partitions on a one-metric query (benches/batch/count_sum.stream: per
# minute, sender domain and event, count and sum of sizes) and on every
# pipeline of pipelines/, a serde_json parse-only pass, and, when
# `python3 -c "import duckdb"` works, DuckDB with 1 and 2 threads on the same
# one-metric query; and, to show scaling with cores where one partition's
# three threads (reader, engine, store writer) already share the cores,
# `streamctl run` with 1 partition held to one core (taskset). Prints
# events/s of each whole process with its CPU time (and so the cores it kept
# busy), rows written and stored, store bytes per million events, and the
# ratios. Not a test.
#
#   bash benches/batch.sh [EVENTS]        (default 1000000)
#
# STREAMCTL=path/to/streamctl measures another build (e.g. an older commit)
# against the same file; ROUNDS=N repeats every run N times, alternated,
# and keeps each one's best.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
rounds=${ROUNDS:-1}
if [ -z "${STREAMCTL:-}" ]; then cargo build --release -q -p streamctl; fi
cargo build --release -q -p benches --bin parse_only
streamctl=${STREAMCTL:-target/release/streamctl}
data=target/bench-data
mkdir -p "$data"
file=$data/events-$events-seed42.jsonl
if [ ! -f "$file" ]; then
  "$streamctl" gen --events "$events" --seed 42 --out "$file.partial"
  mv "$file.partial" "$file"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Scaling with cores: one partition held to one core against two
# partitions on two (off with CORES=0, or where taskset or a second core is missing).
pinned=$([ "${CORES:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ] && echo yes || echo no)
has_duckdb=$(python3 -c 'import duckdb' 2>/dev/null && echo yes || echo no)

# A run: `name wall user system` (seconds) appended to $work/times, its summary kept.
timed() {
  local name=$1
  shift
  local TIMEFORMAT='%R %U %S'
  { time "$@" >"$work/$name.out" 2>"$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }; } 2>"$work/$name.time"
  echo "$name $(cat "$work/$name.time")" >>"$work/times"
}

# `run NAME PIPELINES PARTITIONS [CPUS]`: CPUS (a taskset list) pins the
# whole process to those cores.
run() {
  local name=$1 pipelines=$2 partitions=$3 pin=()
  [ -n "${4:-}" ] && pin=(taskset -c "$4")
  rm -f "$work/$name.db" "$work/$name.db-wal" "$work/$name.db-shm"
  timed "$name" "${pin[@]}" "$streamctl" run "$pipelines" --input "$file" --store "sqlite:$work/$name.db" \
    --partitions "$partitions" --key sender_domain --now 2100-01-01T00:00:00Z --summary-json "$work/$name.json"
}

duckdb_query() {
  python3 - "$file" "$1" <<'PY'
import sys, time, duckdb
path, threads = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
start = time.time()
rows = con.execute(f"""
  SELECT time_bucket(INTERVAL 1 minute, CAST(ts AS TIMESTAMP)) AS minute, sender_domain, event,
         count(*) AS n, sum(size_bytes) AS bytes
  FROM read_json('{path}', format = 'newline_delimited', ignore_errors = true,
                 columns = {{ts: 'VARCHAR', sender_domain: 'VARCHAR', event: 'VARCHAR', size_bytes: 'BIGINT'}})
  GROUP BY ALL""").fetchall()
print(f"{len(rows)} groups in {time.time() - start:.3f}s")
PY
}

for _ in $(seq "$rounds"); do
  timed parse_only target/release/parse_only "$file"
  run one_metric_1p benches/batch/count_sum.stream 1
  run one_metric_2p benches/batch/count_sum.stream 2
  run pipelines_1p pipelines/ 1
  run pipelines_2p pipelines/ 2
  if [ "$pinned" = yes ]; then
    run one_metric_1p_1core benches/batch/count_sum.stream 1 0
    run pipelines_1p_1core pipelines/ 1 0
  fi
  if [ "$has_duckdb" = yes ]; then
    timed duckdb_1t duckdb_query 1
    timed duckdb_2t duckdb_query 2
  fi
done

python3 - "$work" "$events" "$has_duckdb" <<'PY'
import json, os, sqlite3, sys
work, events, has_duckdb = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "yes"
best, cpu = {}, {}
for line in open(os.path.join(work, "times")):
    name, wall, user, system = line.split()
    if float(wall) < best.get(name, float("inf")):
        best[name], cpu[name] = float(wall), float(user) + float(system)
rate = {name: events / s for name, s in best.items()}
print(f"{events} events, best of the rounds, whole process:")
for name in best:
    extra = ""
    summary = os.path.join(work, name + ".json")
    if os.path.exists(summary):
        s = json.load(open(summary))
        db = os.path.join(work, name + ".db")
        con = sqlite3.connect(db)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'stream_%'")]
        stored = sum(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)
        con.close()
        size = os.path.getsize(db)
        per_m = 1e6 / events
        extra = (f"  rows written {s['rows_written']:>9,} ({s['rows_written'] * per_m:,.0f}/M events), "
                 f"stored {stored:,}, store {size / 1e6:.1f} MB ({size * per_m / 1e6:.1f} MB/M events)")
    cores = f"{cpu[name]:5.2f} CPU-s, {cpu[name] / best[name]:.2f} cores"
    print(f"  {name:<20} {rate[name]:>12,.0f} events/s  {cores}{extra}")
def ratio(label, a, b):
    if a in rate and b in rate:
        print(f"  {label:<52} {rate[a] / rate[b]:.2f}")
print("ratios:")
ratio("one metric, 2 partitions / 1 partition (target 1.7)", "one_metric_2p", "one_metric_1p")
ratio("pipelines/, 2 partitions / 1 partition (target 1.7)", "pipelines_2p", "pipelines_1p")
ratio("pipelines/, 1 partition / parse-only (target 0.35)", "pipelines_1p", "parse_only")
ratio("pipelines/, 2 partitions / parse-only (target 0.35)", "pipelines_2p", "parse_only")
ratio("one metric, 1 partition / parse-only", "one_metric_1p", "parse_only")
ratio("one metric, 2 partitions on 2 cores / 1 on 1 core", "one_metric_2p", "one_metric_1p_1core")
ratio("pipelines/, 2 partitions on 2 cores / 1 on 1 core", "pipelines_2p", "pipelines_1p_1core")
if has_duckdb:
    ratio("one metric, 1 partition / DuckDB 1 thread (target 0.8)", "one_metric_1p", "duckdb_1t")
    ratio("one metric, 2 partitions / DuckDB 2 threads (target 0.8)", "one_metric_2p", "duckdb_2t")
else:
    print("  (DuckDB not importable: `pip install duckdb` to compare)")
PY
# A build given by STREAMCTL may be of another commit than the checkout's.
built=${STREAMCTL:+"$streamctl (the checkout is at"}
echo "$(date -u +%Y-%m-%dT%H:%MZ), ${built:-$streamctl at} commit $(git rev-parse --short HEAD)${STREAMCTL:+)}, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg): bash benches/batch.sh $events"
