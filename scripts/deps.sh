#!/usr/bin/env bash
# Install what building rtds needs and the machine lacks: Debian packages for
# librdkafka's bundled build, rustfmt and clippy. Later runs find it all there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/stack/lib.sh
. "$ROOT/scripts/stack/lib.sh"
apt_ensure build-essential pkg-config libssl-dev zlib1g-dev cmake python3 curl
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    say "adding the Rust component $c"
    rustup component add "$c" >&2
  fi
done
