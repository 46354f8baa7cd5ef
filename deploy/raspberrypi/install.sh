#!/usr/bin/env bash
# Install (or upgrade) modemgw as a system service on Raspberry Pi OS bookworm / Debian 12.
#
#   sudo ./deploy/raspberrypi/install.sh            from a clone of the repository
#
# Safe to run again: a file is only written when its content differs, the venv is only rebuilt when the
# source changed, and an administrator's /etc/modemgw/config.toml is never overwritten.
#
# Environment:
#   DESTDIR           install into this staging root instead of / (no user, no systemctl, no udevadm;
#                     the venv is built for its final path inside DESTDIR and is not relocatable)
#   SOURCE            the modemgw source tree (default: the repository this script lives in)
#   PYTHON            the interpreter for the venv (default: python3, 3.11 or newer)
#   MODEMGW_PIP_ARGS  extra arguments for pip install, e.g. "--no-deps" or "--no-index --find-links DIR"
set -euo pipefail

DESTDIR="${DESTDIR:-}"
if [ -n "$DESTDIR" ]; then
    DESTDIR="$(mkdir -p "$DESTDIR" && cd "$DESTDIR" && pwd)"
    [ "$DESTDIR" = / ] && DESTDIR=""
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="${SOURCE:-$(cd "$here/../.." && pwd)}"
PYTHON="${PYTHON:-python3}"
MODEMGW_PIP_ARGS="${MODEMGW_PIP_ARGS:-}"

USER_NAME=modemgw
APP_DIR=/opt/modemgw
VENV="$APP_DIR/venv"
CONFIG_DIR=/etc/modemgw
CONFIG="$CONFIG_DIR/config.toml"
DATA_DIR=/var/lib/modemgw
RULES=/etc/udev/rules.d/99-modemgw.rules
UNIT=/etc/systemd/system/modemgw.service
LINK=/usr/local/bin/modemgw
STAMP="$APP_DIR/.installed-source"

# Temporary files and directories, removed however the script ends.
temporaries=()
cleanup() { if [ ${#temporaries[@]} -gt 0 ]; then rm -rf "${temporaries[@]}"; fi; }
trap cleanup EXIT

say() { printf '%-10s %s\n' "$1" "$2"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) die "unknown argument '$1' (see --help)" ;;
esac

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    die "must run as root to install into the system: sudo $0 (or set DESTDIR=/some/dir to stage an install)"
fi
for file in pyproject.toml deploy/config.example.toml deploy/raspberrypi/modemgw.service udev/99-modemgw.rules; do
    [ -f "$SOURCE/$file" ] || die "$SOURCE does not look like a modemgw source tree: $file is missing (set SOURCE)"
done
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$PYTHON is missing or older than Python 3.11 (set PYTHON)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
    || die "$PYTHON cannot create a venv: sudo apt install python3-venv"

system=false
[ -z "$DESTDIR" ] && system=true
systemd_running=false
$system && [ -d /run/systemd/system ] && systemd_running=true

restart_needed=false
start_failed=false
config_invalid=false

# set_mode PATH MODE [OWNER:GROUP]: change mode and owner only when they differ (a re-run touches nothing).
set_mode() {
    local path="$1" mode="$2" owner="${3:-}"
    if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
        chmod "$mode" "$path"
    fi
    if [ -n "$owner" ] && $system && [ "$(stat -c %U:%G "$path")" != "$owner" ]; then
        chown "$owner" "$path"
    fi
}

# make_dir PATH MODE [OWNER:GROUP]
make_dir() {
    local path="$DESTDIR$1"
    if [ -d "$path" ]; then
        set_mode "$path" "$2" "${3:-}"
    else
        mkdir -p "$path"
        set_mode "$path" "$2" "${3:-}"
        say created "$1/"
    fi
}

# put_file SOURCE_FILE TARGET MODE: write TARGET only when its content differs; returns 0 when it wrote.
put_file() {
    local from="$1" target="$DESTDIR$2" mode="$3" temporary
    mkdir -p "$(dirname "$target")"
    if [ -f "$target" ] && cmp -s "$from" "$target"; then
        set_mode "$target" "$mode"
        say unchanged "$2"
        return 1
    fi
    temporary="$(mktemp "$target.XXXXXX")"
    temporaries+=("$temporary")
    cat "$from" > "$temporary"
    chmod "$mode" "$temporary"
    if [ -e "$target" ]; then say updated "$2"; else say created "$2"; fi
    mv -f "$temporary" "$target"
    return 0
}

source_version() {
    sed -n 's/^version *= *"\(.*\)"/\1/p' "$SOURCE/pyproject.toml" | head -n 1
}

# The files that make the installed package (the wheel is built from a copy of exactly these).
PACKAGE_FILES=(pyproject.toml README.md LICENSE modemgw webui)

# A hash of those files and of how they are installed: a change means the venv must be updated.
source_hash() {
    local name
    (
        cd "$SOURCE"
        for name in "${PACKAGE_FILES[@]}"; do
            if [ -e "$name" ]; then
                find "$name" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0
            fi
        done | LC_ALL=C sort -z | xargs -0 sha256sum
        printf 'python %s\npip-args %s\n' "$("$PYTHON" -c 'import sys; print(sys.version)')" "$MODEMGW_PIP_ARGS"
    ) | sha256sum | cut -d' ' -f1
}

installed_version() {
    "$DESTDIR$VENV/bin/python" -I -c 'import importlib.metadata as m; print(m.version("modemgw"))' 2>/dev/null || true
}

echo "Installing modemgw $(source_version) from $SOURCE${DESTDIR:+ into $DESTDIR}"

# 1. The service user, in the dialout group (the modems' ttys are root:dialout 0660).
if $system; then
    if getent passwd "$USER_NAME" > /dev/null; then
        say unchanged "user $USER_NAME"
    else
        # The group may outlive an earlier user (uninstall --purge keeps a group that has other members).
        if getent group "$USER_NAME" > /dev/null; then group_option=(--gid "$USER_NAME"); else group_option=(--user-group); fi
        useradd --system "${group_option[@]}" --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin \
                --comment "modemgw SMS gateway" "$USER_NAME"
        say created "user $USER_NAME"
    fi
    if id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx dialout; then
        say unchanged "user $USER_NAME in group dialout"
    else
        usermod -a -G dialout "$USER_NAME"
        say updated "user $USER_NAME added to group dialout"
    fi
else
    say skipped "user $USER_NAME (DESTDIR install)"
fi

# 2. The application: a venv in /opt/modemgw with the project installed into it.
make_dir "$APP_DIR" 0755 root:root
wanted_hash="$(source_hash)"
wanted_version="$(source_version)"
if [ -x "$DESTDIR$VENV/bin/modemgw" ] && [ -f "$DESTDIR$STAMP" ] \
   && [ "$(cat "$DESTDIR$STAMP")" = "$wanted_hash" ] && [ "$(installed_version)" = "$wanted_version" ]; then
    say unchanged "$VENV (modemgw $wanted_version, source unchanged)"
else
    if [ -e "$DESTDIR$VENV" ] && ! "$DESTDIR$VENV/bin/python" -I -c '' 2> /dev/null; then
        rm -rf "$DESTDIR$VENV"    # e.g. its Python was removed by an OS upgrade: build it again
        say removed "$VENV (its Python no longer runs)"
    fi
    if [ ! -e "$DESTDIR$VENV" ]; then
        "$PYTHON" -m venv "$DESTDIR$VENV"
        say created "$VENV"
    fi
    # Build from a copy: nothing is written into the source tree (a clone that is not root's).
    build="$(mktemp -d)"
    temporaries+=("$build")
    for name in "${PACKAGE_FILES[@]}"; do
        if [ -e "$SOURCE/$name" ]; then cp -R "$SOURCE/$name" "$build/"; fi
    done
    find "$build" -name __pycache__ -type d -prune -exec rm -rf {} +
    # Unquoted on purpose: MODEMGW_PIP_ARGS holds several arguments.
    # shellcheck disable=SC2086
    "$DESTDIR$VENV/bin/python" -I -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        $MODEMGW_PIP_ARGS "${build}[udev]"
    "$DESTDIR$VENV/bin/modemgw" --version > /dev/null || die "the installed $VENV/bin/modemgw does not run"
    printf '%s\n' "$wanted_hash" > "$DESTDIR$STAMP"
    say installed "modemgw $(installed_version) into $VENV"
    restart_needed=true
fi

# 3. The configuration: only when there is none (an administrator's file is never touched).
make_dir "$CONFIG_DIR" 0750 root:$USER_NAME
if [ -e "$DESTDIR$CONFIG" ]; then
    say kept "$CONFIG (existing configuration, not overwritten)"
else
    # From the example: modems are found under /dev/modemgw (the udev rules), data lives in /var/lib/modemgw.
    temporary="$(mktemp "$DESTDIR$CONFIG.XXXXXX")"
    temporaries+=("$temporary")
    awk -v ports='ports = ["/dev/modemgw/*"]' -v data='data_dir = "/var/lib/modemgw"' '
        function end_of_gateway() { if (section == "gateway" && !ports_done) { print ports; ports_done = 1 } }
        skipping { if ($0 ~ /\]/) skipping = 0; next }
        /^[ \t]*\[/ {
            if (!data_done) { print data; print ""; data_done = 1 }
            end_of_gateway()
            section = $0; gsub(/^[ \t]*\[+[ \t]*|[ \t]*\]+.*$/, "", section)
            print; next
        }
        section == "" && /^[ \t]*data_dir[ \t]*=/ { if (!data_done) { print data; data_done = 1 }; next }
        section == "gateway" && /^[ \t]*ports[ \t]*=/ {
            if (!ports_done) { print ports; ports_done = 1 }
            if ($0 ~ /\[/ && $0 !~ /\]/) skipping = 1
            next
        }
        { print }
        END {
            if (!data_done) print data
            end_of_gateway()
            if (!ports_done) { print ""; print "[gateway]"; print ports }
        }' "$SOURCE/deploy/config.example.toml" > "$temporary"
    chmod 0640 "$temporary"
    if $system; then chown "root:$USER_NAME" "$temporary"; fi
    mv "$temporary" "$DESTDIR$CONFIG"
    say created "$CONFIG (from deploy/config.example.toml; edit it, then: systemctl restart modemgw)"
fi

# The service refuses a configuration it cannot load: say so now rather than at the next restart.
check_config='
import sys
from modemgw import config
try:
    config.load(sys.argv[1])
except config.ConfigError as error:
    sys.exit(str(error))
'
if problem="$("$DESTDIR$VENV/bin/python" -I -c "$check_config" "$DESTDIR$CONFIG" 2>&1)"; then
    say checked "$CONFIG (loads)"
else
    say invalid "$CONFIG: ${problem##*$'\n'}"
    config_invalid=true
fi

# 4. The data directory (the database, the control socket). systemd's StateDirectory= keeps it right too.
make_dir "$DATA_DIR" 0750 $USER_NAME:$USER_NAME

# 5. udev rules: /dev/modemgw/... names, dialout, ModemManager kept off.
if put_file "$SOURCE/udev/99-modemgw.rules" "$RULES" 0644; then
    if $system && udevadm control --ping > /dev/null 2>&1; then
        udevadm control --reload
        udevadm trigger --subsystem-match=tty
        say reloaded "udev rules (tty devices re-triggered)"
    elif $system; then
        say skipped "udev reload (udevd is not running)"
    fi
fi

# 6. The systemd unit.
if put_file "$SOURCE/deploy/raspberrypi/modemgw.service" "$UNIT" 0644; then
    restart_needed=true
    if $systemd_running; then
        systemctl daemon-reload
        say reloaded "systemd units"
    fi
fi

# 7. modemgw on the PATH.
target="$VENV/bin/modemgw"
if [ -L "$DESTDIR$LINK" ] && [ "$(readlink "$DESTDIR$LINK")" = "$target" ]; then
    say unchanged "$LINK -> $target"
elif [ -e "$DESTDIR$LINK" ] && [ ! -L "$DESTDIR$LINK" ]; then
    say skipped "$LINK exists and is not a symlink; left alone (run $target instead)"
else
    mkdir -p "$(dirname "$DESTDIR$LINK")"
    ln -sfn "$target" "$DESTDIR$LINK"
    say created "$LINK -> $target"
fi

# 8. Start (or restart after an upgrade).
if $systemd_running; then
    was_active=false
    systemctl is-active --quiet modemgw && was_active=true
    if ! systemctl is-enabled --quiet modemgw; then
        systemctl enable --quiet modemgw
        say enabled "modemgw.service"
    fi
    if ! $was_active; then
        action=started
        systemctl start modemgw || action=failed
    elif $restart_needed; then
        action=restarted
        systemctl restart modemgw || action=failed
    else
        action=running
    fi
    if [ "$action" = failed ]; then
        start_failed=true
        say failed "modemgw.service did not start: see systemctl status modemgw; journalctl -u modemgw"
    else
        say "$action" "modemgw.service"
    fi
    if systemctl is-active --quiet ModemManager 2>/dev/null; then
        echo
        echo "Note: ModemManager is running. The udev rules keep it off the modems' serial ports, but it may still"
        echo "      use their QMI/MBIM ports and read (and delete) SMS. On a dedicated gateway:"
        echo "        sudo systemctl disable --now ModemManager"
    fi
elif $system; then
    say skipped "systemctl enable --now modemgw (systemd is not running)"
else
    say skipped "systemctl, udevadm (DESTDIR install)"
fi

cat <<EOF

Next steps:
  1. Edit the configuration (http listen address, default_region, ...):
       sudoedit $CONFIG
  2. Find the modems and write them into the configuration, then restart:
       sudo modemgw discover --write && sudo systemctl restart modemgw
  3. Check modems, udev names, permissions and the service:
       sudo modemgw doctor
  4. Create a web UI administrator (as the service user, who owns the database):
       sudo -u $USER_NAME modemgw users add --config $CONFIG --username admin --role admin
  Logs: journalctl -u modemgw -f        Status: sudo modemgw status
EOF

if $config_invalid; then
    echo "The configuration does not load: fix $CONFIG (the message above names the line and option)." >&2
fi
if $start_failed || $config_invalid; then
    exit 1
fi
