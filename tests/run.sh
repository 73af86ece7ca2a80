#!/usr/bin/env bash
# The one command that runs every test: fetches real MNIST if absent (tests use it where
# present), builds Release, runs all test projects and, beside them, the README's TestKit example
# in a project outside the repository that references the packed libraries (tests/packages.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash deploy/fetch-mnist.sh

# What the tests need from Debian, installed in one apt-get run when missing (as root):
# - openssl: the TLS tests make certificates with deploy/make-certs.sh;
# - python3-onnx: onnx.checker under /usr/bin/python3 (another python3 may come first on PATH)
#   checks every exported ONNX graph;
# - prometheus: promtool checks the status endpoint's /metrics scrape;
# - chromium: the dashboard test opens the page in it, headless, driven by Playwright.
missing=()
command -v openssl >/dev/null || missing+=(openssl)
/usr/bin/python3 -c 'import onnx' 2>/dev/null || missing+=(python3-onnx)
command -v promtool >/dev/null || missing+=(prometheus)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (needed by the tests; see tests/run.sh)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${missing[*]}; install them (apt-get install ${missing[*]}) and run again" >&2
    exit 2
  fi
fi

log="$(mktemp)"
packages_log="$(mktemp)"
trap 'rm -f "$log" "$packages_log"' EXIT
status=0
dotnet build DistTrain.sln -c Release --nologo -v q

# The packages in a user's project outside the repository (README, TestKit section). It runs beside
# the tests, which spend much of their time waiting on processes and timeouts; its lines come after.
bash tests/packages.sh >"$packages_log" 2>&1 &
packages_pid=$!
dotnet test DistTrain.sln -c Release --no-build --nologo "$@" 2>&1 | tee "$log" || status=$?

# The kernels' and layers' bit-for-bit tests again on each narrower vector ISA this CPU can run (the
# JIT fixes the ISA at start-up): 256-bit with AVX-512 off, 128-bit (FMA in software) with AVX2 off.
# Training bits across ISAs are checked by Cluster.Tests' IsaProcessTests.
for isa in DOTNET_EnableAVX512 DOTNET_EnableAVX2; do
  env "$isa=0" dotnet test tests/Cnn.Core.Tests -c Release --no-build --nologo \
    --filter "FullyQualifiedName~Kernels|FullyQualifiedName~Layers|FullyQualifiedName~FixedPoint|FullyQualifiedName~Optim" 2>&1 \
    | sed "s/^/[$isa=0] /" | tee -a "$log" || status=$?
done

# dotnet test prints one summary per test assembly; add them up into the plain closing line.
passed=$(grep -Eo 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -Eo 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
skipped=$(grep -Eo 'Skipped: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
echo "tests: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
packages_status=0
wait "$packages_pid" || packages_status=$?
cat "$packages_log"
if [[ $packages_status -eq 0 ]]; then echo "packages: passed"; else echo "packages: FAILED"; status=1; fi

# A short job across three network namespaces with 5 ms between hosts, checked against the same
# job on this machine (the script removes every namespace it made). It needs root and iproute2.
if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null; then
  if bash deploy/netns-cluster.sh --max-steps 150 --latency 5; then echo "netns-cluster: passed"
  else echo "netns-cluster: FAILED"; status=1; fi
else
  echo "netns-cluster: skipped (needs root and iproute2 to create network namespaces)"
fi
exit $status
