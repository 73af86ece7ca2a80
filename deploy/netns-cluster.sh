#!/usr/bin/env bash
# A training job across three "hosts" on one machine: network namespaces, each with its own IP
# (coordinator 10.77.1.2, workers 10.77.2.2 and 10.77.3.2), joined by veth pairs to a router
# namespace, optionally with latency and loss added on the way. It runs
# `disttrain train --workers 0 --remote-workers 2` in one namespace and `disttrain worker` in the two
# others, then the same job on the local machine (2 local worker processes), and checks that both
# reach the same parameters (parameter_sha256) and test accuracy. Everything it creates is
# removed on exit, also on failure or Ctrl-C.
#
#   deploy/netns-cluster.sh [--latency MS] [--loss FRACTION] [--max-steps K] [--epochs E]
#                           [--model lenet5] [--seed S] [--data DIR] [--keep-logs]
#
# --latency MS delays every packet by MS milliseconds between two hosts, so a round trip takes
# 2 x MS more. This kernel has no tc netem (CONFIG_NET_SCH_NETEM is off), so the router sends the
# packets through a TUN device and deploy/netdelay.py holds each one for MS before it is
# forwarded; --loss FRACTION drops that fraction of them. Needs root, iproute2 and python3.
# Exit 0 when the job completed across the namespaces with the local run's hash; 1 otherwise;
# 2 for bad usage or a missing requirement.
set -euo pipefail
cd "$(dirname "$0")/.."

latency=0 loss=0 steps="" epochs=1 model=lenet5 seed=5 data=data/mnist keep=0
usage="usage: deploy/netns-cluster.sh [--latency MS] [--loss FRACTION] [--max-steps K] [--epochs E] [--model NAME] [--seed S] [--data DIR] [--keep-logs]"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --latency) latency=${2:?--latency needs milliseconds, like 5}; shift 2 ;;
    --loss) loss=${2:?--loss needs a fraction, like 0.001}; shift 2 ;;
    --max-steps) steps=${2:?--max-steps needs a number}; shift 2 ;;
    --epochs) epochs=${2:?--epochs needs a number}; shift 2 ;;
    --model) model=${2:?--model needs a name}; shift 2 ;;
    --seed) seed=${2:?--seed needs a number}; shift 2 ;;
    --data) data=${2:?--data needs a folder}; shift 2 ;;
    --keep-logs) keep=1; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "netns-cluster.sh: unknown option $1; $usage" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "netns-cluster.sh: needs root (it creates network namespaces); run it as root or with sudo" >&2; exit 2; }
for tool in ip python3; do
  command -v "$tool" >/dev/null || { echo "netns-cluster.sh: $tool not found (apt-get install iproute2 python3)" >&2; exit 2; }
done
[[ $latency =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "netns-cluster.sh: --latency: expected milliseconds (like 5), got '$latency'" >&2; exit 2; }
[[ $loss =~ ^0([.][0-9]+)?$ ]] || { echo "netns-cluster.sh: --loss: expected a fraction below 1 (like 0.001), got '$loss'" >&2; exit 2; }
delayed=$(python3 -c "print(int($latency > 0 or $loss > 0))")
[[ $delayed == 0 || -c /dev/net/tun ]] || { echo "netns-cluster.sh: --latency/--loss need /dev/net/tun" >&2; exit 2; }

dotnet build src/Coordinator/Cli -c Release -v quiet -nologo >/dev/null
dll="$PWD/src/Coordinator/Cli/bin/Release/net10.0/disttrain.dll"
[[ -d "$data" ]] || deploy/fetch-mnist.sh "$data"
data="$(cd "$data" && pwd)"

id="dt$$"                      # names are unique per run, so two runs never collide
router="$id-r" coord="$id-c" hosts=("$id-c" "$id-w1" "$id-w2") ips=(10.77.1.2 10.77.2.2 10.77.3.2)
out=$(mktemp -d /tmp/disttrain-netns.XXXXXX)
pids=()
cleanup() {
  local code=$?
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for ns in "${hosts[@]}" "$router"; do ip netns del "$ns" 2>/dev/null || true; done
  for i in 0 1 2; do ip link del "$id-v$i" 2>/dev/null || true; done   # a pair that never got moved
  if ip netns list | grep -q "^$id-"; then echo "netns-cluster.sh: namespaces left behind: $(ip netns list | grep "^$id-" | tr '\n' ' ')" >&2; code=1; fi
  if [[ $keep == 1 || $code != 0 ]]; then echo "logs and reports kept in $out"; else rm -rf "$out"; fi
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The "network": a router namespace with one veth pair, and one /24, per host.
ip netns add "$router"
ip -n "$router" link set lo up
ip netns exec "$router" sysctl -q -w net.ipv4.ip_forward=1
for i in 0 1 2; do
  ns=${hosts[$i]} net="10.77.$((i + 1))"
  ip netns add "$ns"
  ip link add "$id-v$i" type veth peer name "$id-r$i"
  ip link set "$id-v$i" netns "$ns"
  ip link set "$id-r$i" netns "$router"
  ip -n "$ns" link set "$id-v$i" name eth0
  ip -n "$ns" addr add "$net.2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "$net.1"
  ip -n "$router" addr add "$net.1/24" dev "$id-r$i"
  ip -n "$router" link set "$id-r$i" up
done
if [[ $delayed == 1 ]]; then
  # Packets coming in from a host are routed into tun0; netdelay.py writes them back after the
  # delay, and from tun0 they take the normal routes to their destination.
  ip netns exec "$router" python3 deploy/netdelay.py tun0 "$latency" "$loss" >"$out/netdelay.log" 2>&1 &
  pids+=("$!"); disown "$!"   # killed at the end; no "Killed" notice
  for _ in $(seq 50); do ip -n "$router" link show tun0 >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$router" link set tun0 up
  ip netns exec "$router" sysctl -q -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tun0.rp_filter=0
  ip -n "$router" route add default dev tun0 table 100
  for i in 0 1 2; do ip -n "$router" rule add iif "$id-r$i" lookup 100; done
fi
# Round trip from worker 1 to worker 2: a TCP connect to a closed port, answered by a reset (no ping here).
rtt=$(ip netns exec "${hosts[1]}" python3 -c '
import socket, sys, time
best = None
for _ in range(5):
    s = socket.socket(); s.settimeout(2); t = time.perf_counter()
    try: s.connect((sys.argv[1], 9))
    except ConnectionRefusedError: best = min(best or 1e9, (time.perf_counter() - t) * 1000)
    except OSError: pass
    finally: s.close()
print(f"{best:.1f}" if best is not None else "unreachable")' "${ips[2]}")
[[ $rtt != unreachable ]] || { echo "netns-cluster.sh: the namespaces cannot reach each other" >&2; exit 1; }
echo "netns: 3 hosts ${ips[*]} behind a router; +${latency} ms per packet, loss $loss; worker-to-worker round trip ${rtt} ms"

job=(--model "$model" --seed "$seed" --epochs "$epochs" --data "$data")
[[ -n "$steps" ]] && job+=(--max-steps "$steps")
token="$out/job.token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token"

started=$(date +%s)
ip netns exec "$coord" dotnet "$dll" train "${job[@]}" --workers 0 --remote-workers 2 --host "${ips[0]}" --port 4053 \
  --token-file "$token" --worker-wait 120 --report "$out/netns.json" --metrics "$out/netns.jsonl" --progress plain >"$out/coordinator.log" 2>&1 &
coordinator=$!
pids+=("$coordinator")
for i in 1 2; do
  ip netns exec "${hosts[$i]}" dotnet "$dll" worker --coordinator "${ips[0]}:4053" --host "${ips[$i]}" --port 4054 --data-port 4055 \
    --data "$data" --threads 1 --token-file "$token" --name "host-$i" --join-timeout 120 >"$out/worker-$i.log" 2>&1 &
  pids+=("$!")
done
echo "netns: training across the namespaces (logs in $out) ..."
set +e
wait "$coordinator"; code=$?
set -e
echo "netns: coordinator exited $code after $(( $(date +%s) - started )) s"
tail -n 3 "$out/coordinator.log"
if [[ $code != 0 ]]; then echo "netns-cluster.sh: FAILED: the job across namespaces exited $code; see $out/coordinator.log" >&2; exit 1; fi

echo "netns: the same job on this machine (2 local worker processes) ..."
dotnet "$dll" train "${job[@]}" --workers 2 --report "$out/local.json" --progress plain >"$out/local.log" 2>&1 \
  || { echo "netns-cluster.sh: FAILED: the local reference run failed; see $out/local.log" >&2; exit 1; }

python3 - "$out/netns.json" "$out/local.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print(f"netns: across namespaces test_accuracy {a['test_accuracy']:.4f}, {a['train_images_per_second']:.0f} img/s, sha256 {a['parameter_sha256'][:16]}")
print(f"netns: local           test_accuracy {b['test_accuracy']:.4f}, {b['train_images_per_second']:.0f} img/s, sha256 {b['parameter_sha256'][:16]}")
if a["parameter_sha256"] != b["parameter_sha256"] or a["test_accuracy"] != b["test_accuracy"]:
    print("netns-cluster.sh: FAILED: the run across namespaces differs from the local run", file=sys.stderr)
    sys.exit(1)
print("netns: PASSED (same parameters and accuracy as the local run)")
EOF
