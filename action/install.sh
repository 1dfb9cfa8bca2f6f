#!/usr/bin/env bash
# The GitHub Action's install steps (action.yml). Two modes:
#   install.sh key      where the build is cached: outputs `cache` (true unless a prebuilt
#                       binary was given), `key` (runner OS and architecture plus a hash of
#                       every source the build reads) and `root` (the cargo install root)
#   install.sh install  outputs `bin`: the prebuilt binary when one was given, else the one in
#                       `root`, built with `cargo install --locked` from the action's own
#                       checkout only when the cache did not already hold it
# Inputs (set by action.yml): INPUT_REFINERY_BINARY, GITHUB_ACTION_PATH, GITHUB_OUTPUT,
# RUNNER_OS, RUNNER_ARCH, HOME. Nothing here reads or prints a key.
set -euo pipefail

mode="${1:?usage: install.sh key|install}"
action_path="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}"
out="${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
binary="${INPUT_REFINERY_BINARY:-}"

if command -v sha256sum >/dev/null 2>&1; then
  sha=(sha256sum)
else
  sha=(shasum -a 256)
fi

# Every file the build reads: the workspace manifests, the toolchain pin, the crates and the
# plugin's prompts (embedded in the binary). A change to any of them is a new key.
source_hash() {
  (
    cd "$action_path"
    find Cargo.lock Cargo.toml rust-toolchain.toml crates plugin -type f -not -path '*/target/*' -print0 |
      LC_ALL=C sort -z | xargs -0 "${sha[@]}"
  ) | "${sha[@]}" | cut -c1-32
}

root_for() {
  echo "${HOME:?HOME is not set}/.cache/refinery-action/$1"
}

case "$mode" in
  key)
    if [ -n "$binary" ]; then
      echo "cache=false" >>"$out"
      exit 0
    fi
    hash="$(source_hash)"
    {
      echo "cache=true"
      echo "key=refinery-${RUNNER_OS:-unknown}-${RUNNER_ARCH:-unknown}-$hash"
      echo "root=$(root_for "$hash")"
    } >>"$out"
    ;;
  install)
    if [ -n "$binary" ]; then
      if [ ! -x "$binary" ]; then
        echo "::error title=Refinery::refinery-binary '$binary' is not an executable file" >&2
        exit 1
      fi
      bin="$binary"
    else
      root="$(root_for "$(source_hash)")"
      bin="$root/bin/refinery"
      if [ -x "$bin" ]; then
        echo "refinery found in the cache ($root)"
      else
        if ! command -v cargo >/dev/null 2>&1; then
          echo "::error title=Refinery::cargo is not on PATH: the action builds refinery with Rust. Use a runner with rustup (GitHub's Ubuntu and macOS runners have it) or give refinery-binary." >&2
          exit 1
        fi
        echo "building refinery from $action_path (cached afterwards under $root)"
        # From the action's folder, so rustup uses its pinned toolchain (rust-toolchain.toml).
        (cd "$action_path" && cargo install --locked --path crates/refinery --root "$root")
      fi
    fi
    "$bin" --version
    echo "bin=$bin" >>"$out"
    ;;
  *)
    echo "usage: install.sh key|install" >&2
    exit 2
    ;;
esac
