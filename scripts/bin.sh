# Sourced by the other scripts: sets BIN to the release binary, building it first.
# BIN from the environment wins; otherwise cargo is asked where its target directory
# is (so CARGO_TARGET_DIR and .cargo/config.toml's target-dir are honoured).
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  target=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  BIN="$target/release/kvmtorture"
fi
[ -x "$BIN" ] || { echo "no kvmtorture binary at $BIN" >&2; exit 4; }
