#!/usr/bin/env bash
# Runs the sequential in-process unary loop in grpcore and in Python grpcio, interleaved
# over several rounds in one script, and prints each round plus the median ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
calls=${CALLS:-10000}
cargo build --release --quiet --bench sequential_unary
bin=$(ls -t target/release/deps/sequential_unary-* | grep -v '\.d$' | head -1)
ours=(); theirs=()
for i in $(seq "$rounds"); do
  a=$("$bin" --bench | awk '{print $4}')
  b=$(python3 benches/sequential_unary.py "$calls" | awk '{print $4}')
  echo "round $i: grpcore $a calls/s, grpcio $b calls/s"
  ours+=("$a"); theirs+=("$b")
done
python3 - "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
ratios = sorted(x / y for x, y in zip(a, b))
print(f"median grpcore {statistics.median(a):.0f} calls/s (range {min(a):.0f}-{max(a):.0f}), "
      f"grpcio {statistics.median(b):.0f} calls/s (range {min(b):.0f}-{max(b):.0f}), "
      f"ratio {statistics.median(ratios):.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f})")
PY
