# What building the function needs besides cargo: librdkafka (the output topic's producer) is
# compiled from source with a C compiler and make, by its own configure script, against the
# machine's OpenSSL headers. (Only the arm64 Lambda build uses CMake, and compiles its own
# OpenSSL; scripts/test installs CMake for it when the system has none.) Sourced by the
# scripts that build.
#
# build_tools_check: says everything that is missing and returns 1, else returns 0.
build_tools_check() {
  local missing=0
  c_toolchain_check || missing=1
  openssl_headers_check || missing=1
  return "$missing"
}

# c_toolchain_check, openssl_headers_check: say what is missing and return 1, else return 0.
c_toolchain_check() {
  command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 && return 0
  echo "missing: a C compiler and make (librdkafka, the output topic's producer, is compiled from source;" >&2
  echo "         Debian/Ubuntu: sudo apt-get install -y build-essential)" >&2
  return 1
}

openssl_headers_check() {
  openssl_headers_found && return 0
  echo "missing: the OpenSSL development files (librdkafka's TLS; Debian/Ubuntu: sudo apt-get install -y libssl-dev pkg-config," >&2
  echo "         or set OPENSSL_DIR)" >&2
  return 1
}

openssl_headers_found() {
  [ -n "${OPENSSL_DIR:-}" ] && return 0
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl && return 0
  [ -f /usr/include/openssl/ssl.h ]
}

# rust_toolchain_check: cargo runs with the toolchain rust-toolchain.toml pins (installed with
# rustup when it is missing and rustup can), or says what is missing and returns 1.
rust_toolchain_check() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "missing: cargo (install Rust with rustup: https://rustup.rs)" >&2
    return 1
  fi
  cargo --version >/dev/null 2>&1 && return 0
  local channel
  channel=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
  if command -v rustup >/dev/null 2>&1; then
    echo "== installing the Rust toolchain $channel that rust-toolchain.toml pins"
    rustup toolchain install "$channel" --profile minimal --component rustfmt,clippy && return 0
  fi
  echo "missing: the Rust toolchain $channel that rust-toolchain.toml pins" >&2
  echo "         (rustup toolchain install $channel --component rustfmt,clippy)" >&2
  return 1
}
