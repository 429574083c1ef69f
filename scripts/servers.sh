# The server matrix: which servers the integration tests run against and
# how each is installed on a Debian bookworm machine. Sourced (by
# common.sh), not run.
#
#   redis-7.0   bookworm's redis-server package (installed by ensure_packages)
#   valkey-8.1  trixie's valkey-server/valkey-tools binary packages
#   redis-8.0   trixie's redis-server/redis-tools binary packages
#
# The trixie servers are not installed into the system: their .debs (and
# the trixie libraries they need, glibc included) are downloaded with a
# private apt state pointed at trixie (the host's apt sources are not
# touched) and unpacked with `dpkg -x` into a root of their own under
# $TK_SERVER_CACHE; no maintainer script runs, so no service is started.
# A small wrapper runs each binary through that root's dynamic loader with
# that root's libraries (exec, so the pid the harness sees is the server's).
# The module stays the one .so built on bookworm: a module built against an
# older glibc loads into a process running a newer one.
#
# The root is cached by the packages' Debian versions and reused until
# TK_SERVER_REFRESH=1 (or the directory is removed).

SERVERS=(redis-7.0 valkey-8.1 redis-8.0)
DEFAULT_SERVER=redis-7.0
# Root of the cached trixie servers.
if [ -z "${TK_SERVER_CACHE:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        TK_SERVER_CACHE=/var/cache/tk-redis/servers
    else
        TK_SERVER_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tk-redis/servers"
    fi
fi

# The Debian mirror of the host's apt sources (TK_DEBIAN_MIRROR overrides).
debian_mirror() {
    if [ -n "${TK_DEBIAN_MIRROR:-}" ]; then echo "$TK_DEBIAN_MIRROR"; return; fi
    local uri
    uri="$(grep -hs -A3 '^Types:.*deb' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {print $2}' | grep -v -e security -e '^$' | grep -m1 debian || true)"
    [ -n "$uri" ] || uri="$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

# Downloads and unpacks trixie's redis and valkey packages into
# $TK_SERVER_CACHE/trixie-<versions>/root (once), and points
# $TK_SERVER_CACHE/trixie at it.
ensure_trixie_root() {
    local link="$TK_SERVER_CACHE/trixie"
    if [ "${TK_SERVER_REFRESH:-0}" != 1 ] && [ -x "$link/root/usr/lib64/ld-linux-x86-64.so.2" ]; then
        return
    fi
    local apt_dir="$TK_SERVER_CACHE/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/cache"
    # An empty dpkg status: apt resolves the whole dependency closure
    # (trixie's libc6 included), as it would for an empty trixie root.
    : >"$apt_dir/status"
    # trixie's archive keys came to bookworm in debian-archive-keyring
    # 2023.3+deb12u2; an older bookworm gets them with an upgrade.
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    if [ ! -e /etc/apt/trusted.gpg.d/debian-archive-trixie-stable.asc ]; then
        echo "==> upgrading debian-archive-keyring (for trixie's archive keys)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null
    fi
    echo "deb [signed-by=$keyring] $(debian_mirror) trixie main" >"$apt_dir/sources.list"
    local apt=(apt-get -qq -o Dir::Etc::SourceList="$apt_dir/sources.list"
        -o Dir::Etc::SourceParts=/dev/null -o Dir::State="$apt_dir"
        -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::Status="$apt_dir/status"
        -o Dir::Cache="$apt_dir/cache" -o Dir::Cache::Archives="$apt_dir/archives"
        -o Debug::NoLocking=1 -o APT::Install-Recommends=0 -o APT::Get::List-Cleanup=0)
    echo "==> fetching trixie's redis-server and valkey-server packages into $TK_SERVER_CACHE"
    "${apt[@]}" update
    rm -f "$apt_dir/archives/"*.deb
    "${apt[@]}" install -y --download-only redis-server redis-tools valkey-server valkey-tools >/dev/null
    local versions
    versions="$(cd "$apt_dir/archives" && ls redis-server_*.deb valkey-server_*.deb \
        | sed -e 's/_amd64\.deb$//' -e 's/%3a/-/' | tr '_' '-' | tr '\n' '_' | sed 's/_$//')"
    local dir="$TK_SERVER_CACHE/trixie-$versions"
    if [ ! -x "$dir/root/usr/lib64/ld-linux-x86-64.so.2" ]; then
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp/root"
        local deb
        for deb in "$apt_dir/archives/"*.deb; do
            dpkg -x "$deb" "$dir.tmp/root"
        done
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    # The package lists (~40 MB) are only needed to fetch again.
    rm -rf "$apt_dir/archives/"*.deb "$apt_dir/lists"
    ln -sfn "$(basename "$dir")" "$link"
}

# Writes $bin/<name> running the trixie root's /usr/bin/<target>.
trixie_wrapper() {
    local root="$1" bin="$2" name="$3" target="$4"
    cat >"$bin/$name.tmp$$" <<EOF
#!/bin/sh
# Runs trixie's $target from $root with that root's loader and libraries.
exec "$root/usr/lib64/ld-linux-x86-64.so.2" \\
    --library-path "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \\
    "$root/usr/bin/$target" "\$@"
EOF
    chmod +x "$bin/$name.tmp$$"
    mv "$bin/$name.tmp$$" "$bin/$name"
}

# use_server NAME: installs NAME if needed and exports TK_REDIS_SERVER and
# TK_REDIS_CLI (read by the test harness) for it, plus TK_SERVER_NAME.
use_server() {
    local name="$1" expect root bin lock_fd
    case "$name" in
        redis-7.0)
            TK_REDIS_SERVER="$(command -v redis-server)"
            TK_REDIS_CLI="$(command -v redis-cli)"
            expect="Redis server v=7.0."
            ;;
        valkey-8.1 | redis-8.0)
            mkdir -p "$TK_SERVER_CACHE"
            # Two runs on one machine (two checkouts) share the cache: the
            # first one to get here installs, the other waits.
            exec {lock_fd}>"$TK_SERVER_CACHE/.lock"
            flock "$lock_fd"
            ensure_trixie_root
            root="$(cd "$TK_SERVER_CACHE/trixie" && pwd -P)/root"
            bin="$TK_SERVER_CACHE/trixie/$name/bin"
            mkdir -p "$bin"
            if [ "$name" = valkey-8.1 ]; then
                trixie_wrapper "$root" "$bin" redis-server valkey-server
                trixie_wrapper "$root" "$bin" redis-cli valkey-cli
                expect="Valkey server v=8.1."
            else
                trixie_wrapper "$root" "$bin" redis-server redis-server
                trixie_wrapper "$root" "$bin" redis-cli redis-cli
                expect="Redis server v=8.0."
            fi
            TK_REDIS_SERVER="$bin/redis-server"
            TK_REDIS_CLI="$bin/redis-cli"
            exec {lock_fd}>&-
            ;;
        *)
            echo "error: unknown server '$name' (known: ${SERVERS[*]})" >&2
            exit 2
            ;;
    esac
    local version
    version="$("$TK_REDIS_SERVER" --version)"
    case "$version" in
        "$expect"*) ;;
        *)
            echo "error: $name: $TK_REDIS_SERVER is '$version', expected '$expect*'" >&2
            exit 1
            ;;
    esac
    TK_SERVER_NAME="$name"
    export TK_REDIS_SERVER TK_REDIS_CLI TK_SERVER_NAME
    echo "==> server $name: $version ($TK_REDIS_SERVER)"
}
