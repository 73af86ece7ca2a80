#!/usr/bin/env bash
# Chaos run: trains with N local worker processes, kills a random worker (kill -9) several times
# during the run and starts a replacement each time (`disttrain worker --coordinator ...`), then
# checks that the run completed with the parameter_sha256 of the same run without faults.
#
#   deploy/chaos.sh [--kills K] [--max-steps S] [--workers N] [--seed X] [--data DIR]
#
# Exit 0 when the hashes match; 1 when they differ or the run failed. Needs python3 (reads the reports).
set -euo pipefail
cd "$(dirname "$0")/.."

# 8,000 steps (about a minute of training here) leave room for each fault's ~12 s of detection:
# with fewer, the last kills land after training has ended.
kills=3 steps=8000 workers=3 seed=3 data=data/mnist
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kills) kills=$2; shift 2 ;;
    --max-steps) steps=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) echo "chaos.sh: unknown option $1 (expected --kills, --max-steps, --workers, --seed, --data)" >&2; exit 2 ;;
  esac
done

dotnet build src/Coordinator/Cli -c Release -v quiet -nologo >/dev/null
bin=src/Coordinator/Cli/bin/Release/net10.0/disttrain
[[ -d "$data" ]] || deploy/fetch-mnist.sh "$data"
out=$(mktemp -d /tmp/disttrain-chaos.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

common=(--model lenet5 --epochs 100 --max-steps "$steps" --seed "$seed" --data "$data")
echo "chaos: fault-free reference run ($workers in-process workers) ..."
"$bin" train "${common[@]}" --workers "$workers" --in-process --report "$out/reference.json" >"$out/reference.log" 2>&1

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DISTTRAIN_JOB_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "chaos: training with $workers worker processes on port $port; $kills kill(s) with replacements; log in $out/chaos.log"
"$bin" train "${common[@]}" --workers "$workers" --port "$port" --report "$out/chaos.json" >"$out/chaos.log" 2>&1 &
coordinator=$!
pids+=("$coordinator")

# Waits until the log has at least $2 lines matching $1 (or the coordinator is gone).
wait_for() { while kill -0 "$coordinator" 2>/dev/null && [[ $(grep -c "$1" "$out/chaos.log" || true) -lt $2 ]]; do sleep 0.5; done; }

for ((k = 1; k <= kills; k++)); do
  # One fault at a time, each at a random moment after the previous one has been handled.
  wait_for "^generation" "$k"
  sleep $((2 + RANDOM % 5)).$((RANDOM % 10))
  kill -0 "$coordinator" 2>/dev/null || break
  victims=($(pgrep -f "disttrain worker --coordinator 127.0.0.1:$port" || true))
  [[ ${#victims[@]} -gt 0 ]] || break
  victim=${victims[$((RANDOM % ${#victims[@]}))]}
  echo "chaos: kill -9 worker pid $victim; starting replacement chaos-$k"
  kill -9 "$victim" 2>/dev/null || true
  "$bin" worker --coordinator "127.0.0.1:$port" --data "$data" --threads 1 --name "chaos-$k" >"$out/replacement-$k.log" 2>&1 &
  pids+=("$!")
done

status=0
wait "$coordinator" || status=$?
grep -E "lost worker|joined mid-run|generation|no worker" "$out/chaos.log" | sed 's/^/  /' || true
python3 - "$out/reference.json" "$out/chaos.json" "$status" "$kills" <<'EOF'
import json, sys
ref = json.load(open(sys.argv[1]))
try:
    run = json.load(open(sys.argv[2]))
except FileNotFoundError:
    print(f"chaos: FAILED: the run wrote no report (exit {sys.argv[3]})"); sys.exit(1)
print(f"chaos: status {run['status']}, worker_failures {run['worker_failures']}, redone_steps {run['redone_steps']}, "
      f"workers at the end {run['workers']}, test_accuracy {run['test_accuracy']:.4f}")
print(f"chaos: reference {ref['parameter_sha256']}\nchaos:     chaos {run['parameter_sha256']}")
if run["worker_failures"] < int(sys.argv[4]):
    print(f"chaos: note: {run['worker_failures']} of {sys.argv[4]} kills hit a worker during training; a larger --max-steps gives them room")
ok = run["status"] == "completed" and run["parameter_sha256"] == ref["parameter_sha256"]
print("chaos: PASSED: same parameters as the fault-free run" if ok else "chaos: FAILED")
sys.exit(0 if ok else 1)
EOF
