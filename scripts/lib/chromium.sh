# Sourced by scripts/test: installs Debian's Chromium (/usr/bin/chromium), which
# the console's browser tests drive through Playwright, when it is missing.
# CI runs as root on a fresh machine; elsewhere sudo is used if there is one.
if [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium for the browser tests (apt-get)" >&2
    as_root=()
    if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null; then as_root=(sudo); fi
    "${as_root[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium >&2
fi
