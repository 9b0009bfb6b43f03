# shellcheck shell=bash
# Shared set-up steps of bin/test and bin/quickstart.
# Sourced, not run. The caller sets `set -euo pipefail`, changes to the repository root and sets
# SETUP_NAME (the prefix of log lines), then calls:
#
#   ensure_services        redis-server, the PostgreSQL server binaries and haproxy (apt-get when missing)
#   ensure_node            node and npm, for the TypeScript-client test (apt-get when missing)
#   ensure_venv            Python 3.11+ ($PYTHON, default python3) and .venv
#   ensure_package [EXTRA] pip install -e '.[EXTRA]' into .venv, skipped while setup.cfg and
#                          setup.py are unchanged since the last install with that extra
#
# Every step exits non-zero with a message on stderr when it cannot do its job.

SETUP_NAME=${SETUP_NAME:-bin/setup}

log() { printf '%s: %s\n' "$SETUP_NAME" "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing: $*; install them with your package manager (no apt-get here)"
        exit 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        "${SUDO[@]}" apt-get update
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

have_initdb() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return 0
    command -v initdb >/dev/null 2>&1 && return 0
    command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]
}

ensure_services() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    have_initdb || missing+=(postgresql)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

ensure_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
}

ensure_venv() {
    PYTHON=${PYTHON:-python3}
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        apt_install python3 python3-venv
    fi
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        log "$PYTHON is $("$PYTHON" --version 2>&1); Python 3.11 or newer is required"
        exit 1
    fi
    if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
        log "removing a broken .venv (no pip)"
        rm -rf .venv
    fi
    if [ ! -x .venv/bin/python ]; then
        if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install python3-venv
        fi
        log "creating .venv"
        "$PYTHON" -m venv .venv
    fi
}

ensure_package() {
    local extra=${1:-}
    local spec=.
    [ -n "$extra" ] && spec=".[$extra]"
    local stamp=".venv/.mcp-tenants-installed${extra:+-$extra}"
    local want
    want=$(cat setup.cfg setup.py | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        log "pip install -e '$spec'"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
        printf '%s\n' "$want" > "$stamp"
    fi
}
