# Shared by scripts/serve and scripts/test: installs what is missing.
# Sourced, not run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE_SO="$REPO_ROOT/target/release/libtk_redis.so"
source "$REPO_ROOT/scripts/servers.sh"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

# Debian packages: redis-server/redis-tools (the server under test and
# redis-cli), and libclang for the redis-module crate's bindgen.
ensure_packages() {
    local missing=() package
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    command -v cc >/dev/null || missing+=(gcc libc6-dev)
    if command -v dpkg-query >/dev/null; then
        for package in libclang1-14 libclang-common-14-dev; do
            dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
        done
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing: ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # Debian's package may start its own server on 6379; tests never use that
    # port, and scripts/serve says so if it is taken.
    if ! command -v cargo >/dev/null; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "error: cargo not found: install Rust (https://rustup.rs), then re-run" >&2
            exit 1
        fi
    fi
}

build_module() {
    echo "==> building the module (release)"
    (cd "$REPO_ROOT" && cargo build --release -p tk-redis-module)
}
