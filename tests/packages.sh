#!/usr/bin/env bash
# The packages as a user's test project sees them, by the steps of the README's TestKit section:
# packs the libraries into a local folder feed, creates an xunit project outside the repository
# with `dotnet new xunit`, references DistTrain.Coordinator from the feed and Akka.TestKit.Xunit2,
# and runs in it the README's TestKit example, taken from README.md now so the two cannot drift.
# Needs the Release build (tests/run.sh makes it); prints the time of each step.
# Usage: tests/packages.sh [README.md]   (another README: to see the check fail on a broken example)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readme="$(realpath "${1:-$root/README.md}")"
cd "$root"

work="$(mktemp -d /tmp/disttrain-packages.XXXXXX)"
# The NuGet cache keeps a package by id and version, so every check packs a version of its own
# (a fixed one would restore the copy an earlier check packed) and takes it out of the cache after.
base="$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' src/Directory.Build.props)"
version="$base-check.$(date +%s).$$"
cache="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
cleanup() {
  rm -rf "$work"
  for id in disttrain.cnn.core disttrain.protocol disttrain.worker disttrain.coordinator; do
    rm -rf "${cache:?}/$id/$version"
    rmdir "$cache/$id" 2>/dev/null || true
  done
}
trap cleanup EXIT

say() { echo "packages: $*"; }
step() {   # step NAME COMMAND...: runs it quietly, prints its seconds; on failure its output and exit 1
  local name="$1" start=$SECONDS out; shift
  if ! out="$("$@" 2>&1)"; then
    echo "$out"
    say "FAILED at '$name' ($*)"
    exit 1
  fi
  say "$name: $((SECONDS - start)) s"
}

example="$(awk '
  /^## Test your model.s convergence with Akka.TestKit/ { section = 1; next }
  section && /^## / { exit }
  section && /^```csharp/ { inside = 1; next }
  inside && /^```/ { exit }
  inside { print }' "$readme")"
if [[ -z "$example" ]]; then
  say "FAILED: $readme has no \`\`\`csharp block in its section \"Test your model's convergence with Akka.TestKit\""
  exit 1
fi

step "pack $version into a folder feed" \
  dotnet pack DistTrain.sln -c Release --no-build --no-restore --nologo -v q -o "$work/feed" -p:Version="$version"
mkdir "$work/MyModel.Tests"
cd "$work/MyModel.Tests"
step "dotnet new xunit outside the repository" dotnet new xunit --no-restore
rm -f UnitTest1.cs
printf '%s\n' "$example" > ReadmeExample.cs
step "the feed and the package references" bash -c "
  dotnet new nugetconfig >/dev/null &&
  dotnet nuget add source '$work/feed' --name disttrain --configfile nuget.config >/dev/null &&
  dotnet add package DistTrain.Coordinator --version '$version' --no-restore >/dev/null &&
  dotnet add package Akka.TestKit.Xunit2 --version 1.5.74 --no-restore >/dev/null"
start=$SECONDS
if ! out="$(dotnet test --nologo 2>&1)"; then
  echo "$out"
  say "FAILED: the README's TestKit example does not pass in a project that references the packages (above)"
  exit 1
fi
say "$(grep -Eo '(Passed|Failed)!.*' <<<"$out" | sed 's/ - [^ ]*\.dll.*//' | head -1) (restore, build and test: $((SECONDS - start)) s)"
