# A throwaway Kafka-compatible broker for the scripts: tansu (crates.io, Apache-2.0) with
# in-memory storage (the tests also start it on sqlite files). `tansu_ensure` finds it or
# installs it once; `tansu_start` starts it on a
# free port and exports BOOTSTRAP_SERVERS and TANSU_BIN; `tansu_stop` stops it.
# Sourced by scripts/test and scripts/stream-local (after scripts/lib/pg.sh, for pg_free_port).

TANSU_VERSION=0.6.0
# dynostore: the in-memory storage most tests use. libsql: sqlite storage, the only one here
# that keeps SCRAM users, for the test of a successful SASL login.
TANSU_FEATURES=dynostore,libsql

# Whether the tansu binary $1 has sqlite storage (older installs of these scripts had only
# dynostore): it starts a broker on a throwaway file and waits for it to say it is ready.
tansu_has_sqlite() {
  local dir port pid tries=0 ready=1
  dir=$(mktemp -d -t enricher-tansu-probe-XXXXXX)
  port=$(pg_free_port)
  (cd "$dir" && exec "$1" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://probe.db \
    >"$dir/log" 2>&1) &
  pid=$!
  while [ "$tries" -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
    if grep -q "ready in" "$dir/log"; then ready=0; break; fi
    tries=$((tries + 1))
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  return "$ready"
}

# TANSU_BIN, else the first of tansu on the PATH and the one in cargo's bin folder (or
# $TANSU_ROOT/bin) that has sqlite storage.
tansu_find() {
  local candidate
  if [ -n "${TANSU_BIN:-}" ]; then
    if [ -x "$TANSU_BIN" ] && tansu_has_sqlite "$TANSU_BIN"; then echo "$TANSU_BIN"; return; fi
    echo "TANSU_BIN=$TANSU_BIN is not a tansu with sqlite storage (the libsql feature)" >&2
    return 1
  fi
  for candidate in "$(command -v tansu 2>/dev/null)" \
    "${TANSU_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin/tansu"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if tansu_has_sqlite "$candidate"; then echo "$candidate"; return; fi
    echo "== $candidate has no sqlite storage (built without the libsql feature)" >&2
  done
  return 1
}

# Installs tansu with cargo into cargo's bin folder (or $TANSU_ROOT/bin), where later runs
# find it. Unoptimised
# (opt-level 0, no debug info): a broker for a dozen test records needs no optimiser, and the
# build takes about 9 minutes on 2 cores instead of 12 or more.
tansu_install() {
  echo "== tansu (a Kafka-compatible broker) is not installed with $TANSU_FEATURES: installing tansu $TANSU_VERSION with cargo, once"
  echo "   (10 to 25 minutes on 2 cores; set TANSU_BIN to use a tansu binary you already have)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=false \
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
  CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" --quiet --force \
      ${TANSU_ROOT:+--root "$TANSU_ROOT"} || {
    echo "could not install tansu from crates.io (is the registry reachable?)." >&2
    echo "Install it yourself (cargo install tansu --version $TANSU_VERSION --locked --features $TANSU_FEATURES) or set TANSU_BIN." >&2
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
