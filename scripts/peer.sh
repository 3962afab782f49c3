#!/usr/bin/env bash
# Side-by-side run of cubed and the peer (ClickHouse materialized views, ../shared/bench) on the
# same events: per minute, count, sum(amount) and exact UV over 5 grouping sets.
# Prints events per CPU-second for both and their ratio. Usage: scripts/peer.sh [EVENTS] [USERS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench="$here/../shared/bench"
n=${1:-2000000}
users=${2:-180000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$bench" && go run . "$n" "$users" > "$tmp/events.jsonl" 2>/dev/null)
cd "$here"
go build -o "$tmp/cubed" ./cmd/cubed
cat > "$tmp/peer.yaml" <<YAML
version: 1
cubes:
  - name: peer
    source:
      file: {path: $tmp/events.jsonl}
    event_time: {field: event_time, format: "2006-01-02 15:04:05", max_out_of_orderness: 5s}
    dimensions: [{name: country}, {name: platform}, {name: app_version}, {name: channel}, {name: page}]
    measures:
      - {name: pv, type: count}
      - {name: amt, type: sum, field: amount}
      - {name: uv, type: count_distinct, field: user_id}
    grouping_sets:
      - [country, platform, app_version, channel, page]
      - [country]
      - [platform, app_version]
      - [channel]
      - []
    windows: [{granularity: minute}]
YAML
/usr/bin/time -f "%U %S %e" -o "$tmp/cubed.time" "$tmp/cubed" replay --config "$tmp/peer.yaml" --data-dir "$tmp/data" > "$tmp/summary.json"
read -r cu cs wall < "$tmp/cubed.time"
cubed_rate=$(python3 -c "print(round($n/($cu+$cs)))")
echo "cubed: events=$n wall_s=$wall cpu_s=$(python3 -c "print(round($cu+$cs,2))") events_per_cpu_s=$cubed_rate $(cat "$tmp/summary.json")"
peer=$("$bench/run_peer.sh" "$tmp/events.jsonl" | tail -1)
echo "$peer"
peer_rate=$(echo "$peer" | sed -n 's/.*events_per_cpu_s=\([0-9]*\).*/\1/p')
python3 -c "print(f'ratio cubed/peer (events per CPU-second): {$cubed_rate/$peer_rate:.2f}x')"
