# A throwaway Kafka-compatible broker for the scripts: tansu (crates.io, Apache-2.0) with
# in-memory storage. `tansu_ensure` finds it or installs it once; `tansu_start` starts it on a
# free port and exports BOOTSTRAP_SERVERS and TANSU_BIN; `tansu_stop` stops it.
# Sourced by scripts/test and scripts/stream-local (after scripts/lib/pg.sh, for pg_free_port).

TANSU_VERSION=0.6.0

tansu_find() {
  if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then echo "$TANSU_BIN"; return; fi
  if command -v tansu >/dev/null 2>&1; then command -v tansu; return; fi
  local installed="${TANSU_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin/tansu"
  if [ -x "$installed" ]; then echo "$installed"; return; fi
  return 1
}

# Installs tansu with cargo into cargo's bin folder (or $TANSU_ROOT/bin), where later runs
# find it. Unoptimised
# (opt-level 0, no debug info): a broker for a dozen test records needs no optimiser, and the
# build takes about 9 minutes on 2 cores instead of 12 or more.
tansu_install() {
  echo "== tansu (a Kafka-compatible broker) is not installed: installing tansu $TANSU_VERSION with cargo, once"
  echo "   (about 9 minutes on 2 cores; set TANSU_BIN to use a tansu binary you already have)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=false \
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
  CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --quiet \
      ${TANSU_ROOT:+--root "$TANSU_ROOT"} || {
    echo "could not install tansu from crates.io (is the registry reachable?)." >&2
    echo "Install it yourself (cargo install tansu --locked --features dynostore) or set TANSU_BIN." >&2
    return 1
  }
}

tansu_ensure() {
  TANSU_BIN=$(tansu_find) || { tansu_install && TANSU_BIN=$(tansu_find); } || return 1
  export TANSU_BIN
}

tansu_start() {
  tansu_ensure || return 1
  TANSU_DIR=$(mktemp -d -t enricher-tansu-XXXXXX)
  local port
  port=$(pg_free_port)
  "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$TANSU_DIR/broker.log" 2>&1 &
  TANSU_PID=$!
  local tries=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$TANSU_PID" 2>/dev/null; then
      echo "tansu exited before listening:" >&2; cat "$TANSU_DIR/broker.log" >&2; return 1
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || { echo "tansu did not listen on port $port within 30 s" >&2; return 1; }
    sleep 0.1
  done
  export BOOTSTRAP_SERVERS="127.0.0.1:$port"
  echo "tansu broker started on $BOOTSTRAP_SERVERS (in memory; log in $TANSU_DIR/broker.log)"
}

tansu_stop() {
  [ -n "${TANSU_PID:-}" ] || return 0
  kill "$TANSU_PID" 2>/dev/null || true
  wait "$TANSU_PID" 2>/dev/null || true
  rm -rf "$TANSU_DIR"
  TANSU_PID=
}
