#!/usr/bin/env bash
# Chaos run: trains with N local worker processes, kills a random worker (kill -9) several times
# during the run and starts a replacement each time (`disttrain worker --coordinator ...`), then
# checks that the run completed with the parameter_sha256 of the same run without faults, and
# prints how long each loss took to notice. `--signal STOP` freezes the victims instead (they keep
# their connections, so only the heartbeat failure detector can notice them).
#
#   deploy/chaos.sh [--kills K] [--signal KILL|STOP] [--max-steps S] [--workers N] [--seed X] [--data DIR]
#
# Exit 0 when the hashes match; 1 when they differ or the run failed. Needs python3 (reads the reports).
set -euo pipefail
cd "$(dirname "$0")/.."

# 8,000 steps (about two minutes here) leave room for five faults, each 1-5 s after the previous
# replacement has entered the ring: with fewer, the last faults land after training has ended.
# A kill -9 is noticed within a fraction of a second (the times are printed at the end).
kills=3 signal=KILL steps=8000 workers=3 seed=3 data=data/mnist
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kills) kills=$2; shift 2 ;;
    --signal) signal=$2; shift 2 ;;
    --max-steps) steps=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) echo "chaos.sh: unknown option $1 (expected --kills, --signal, --max-steps, --workers, --seed, --data)" >&2; exit 2 ;;
  esac
done
[[ "$signal" == KILL || "$signal" == STOP ]] || { echo "chaos.sh: --signal $signal: expected KILL or STOP" >&2; exit 2; }

dotnet build src/Coordinator/Cli -c Release -v quiet -nologo >/dev/null
[[ -d "$data" ]] || deploy/fetch-mnist.sh "$data"
out=$(mktemp -d /tmp/disttrain-chaos.XXXXXX)
# A copy of the build: a rebuild during the run must not change the replacements' binary.
cp -r src/Coordinator/Cli/bin/Release/net10.0 "$out/bin"
bin=$out/bin/disttrain
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$out/bin"; }
trap cleanup EXIT

common=(--model lenet5 --epochs 100 --max-steps "$steps" --seed "$seed" --data "$data")
echo "chaos: fault-free reference run ($workers in-process workers) ..."
"$bin" train "${common[@]}" --workers "$workers" --in-process --report "$out/reference.json" >"$out/reference.log" 2>&1

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DISTTRAIN_JOB_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "chaos: training with $workers worker processes on port $port; $kills kill(s) with replacements; log in $out/chaos.log"
# Every line of the coordinator's log gets the time it arrived (seconds since the epoch, no fork per line).
stamp() { while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done; }
"$bin" train "${common[@]}" --workers "$workers" --port "$port" --report "$out/chaos.json" > >(stamp >"$out/chaos.log") 2>&1 &
coordinator=$!
pids+=("$coordinator")

# The last "generation N: M worker(s) [a, b, c]" line of the log, without its time.
last_generation() { grep -E "^[0-9.]+ generation [0-9]+:" "$out/chaos.log" 2>/dev/null | tail -1 | cut -d' ' -f2- || true; }
# Waits until a generation newer than $1 trains with all the job's workers (the last replacement
# has entered), so that every fault hits a worker in training; false when the coordinator is gone.
wait_full() {
  while kill -0 "$coordinator" 2>/dev/null; do
    read -r g m < <(last_generation | sed -n 's/^generation \([0-9]*\): \([0-9]*\) worker.*/\1 \2/p')
    [[ -n "${g:-}" && $g -gt $1 && $m -eq $workers ]] && return 0
    sleep 0.3
  done
  return 1
}

generation=0
for ((k = 1; k <= kills; k++)); do
  # One fault at a time, at a random moment once the previous one has been handled and replaced.
  wait_full "$generation" || break
  sleep $((1 + RANDOM % 4)).$((RANDOM % 10))
  line=$(last_generation)
  generation=$(sed -n 's/^generation \([0-9]*\):.*/\1/p' <<<"$line")
  names=($(sed 's/.*\[\(.*\)\].*/\1/' <<<"$line" | tr -d ' ' | tr ',' ' '))
  name=${names[$((RANDOM % ${#names[@]}))]}
  victim=$(pgrep -f "disttrain worker --coordinator 127.0.0.1:$port .*--name $name( |$)" | head -1 || true)
  [[ -n "$victim" ]] || { echo "chaos: worker $name of generation $generation has no process; stopping the faults" >&2; break; }
  echo "chaos: kill -$signal worker $name (pid $victim) of generation $generation; starting replacement chaos-$k"
  kill -"$signal" "$victim" 2>/dev/null || true
  echo "$EPOCHREALTIME" >>"$out/kills"
  [[ "$signal" == STOP ]] && pids+=("$victim")   # a frozen one is killed at the end (a killed one's pid may be reused)
  "$bin" worker --coordinator "127.0.0.1:$port" --data "$data" --threads 1 --name "chaos-$k" >"$out/replacement-$k.log" 2>&1 &
  pids+=("$!")
done

status=0
wait "$coordinator" || status=$?
sleep 0.2   # the log's last lines
grep -E "lost worker|joined mid-run|generation|no worker" "$out/chaos.log" | cut -d' ' -f2- | sed 's/^/  /' || true
signal=$signal python3 - "$out/reference.json" "$out/chaos.json" "$status" "$kills" "$out/kills" "$out/chaos.log" <<'EOF'
import json, os, statistics, sys
# From each kill -9 to the first "lost worker" line after it: how fast a loss is noticed.
kills = [float(t) for t in open(sys.argv[5])] if os.path.exists(sys.argv[5]) else []
losses = [float(l.split(" ", 1)[0]) for l in open(sys.argv[6]) if " lost worker " in l]
delays = []
for k in kills:
    after = [t for t in losses if t >= k]
    if after: delays.append(after[0] - k)
if delays:
    print(f"chaos: kill -{os.environ['signal']} to 'lost worker': " + ", ".join(f"{d:.2f}" for d in delays) + f" s; median {statistics.median(delays):.2f} s")
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
