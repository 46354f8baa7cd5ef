#!/usr/bin/env bash
# Remove what install.sh installed: the service, the udev rules, the venv and the modemgw command.
#
#   sudo ./deploy/raspberrypi/uninstall.sh            keeps /etc/modemgw (configuration) and
#                                                     /var/lib/modemgw (the database: messages, users, keys)
#   sudo ./deploy/raspberrypi/uninstall.sh --purge    also deletes those and the modemgw user
#
# Environment: DESTDIR, as for install.sh (no systemctl, udevadm or userdel then).
set -euo pipefail

DESTDIR="${DESTDIR:-}"
DESTDIR="${DESTDIR%/}"

USER_NAME=modemgw
APP_DIR=/opt/modemgw
VENV="$APP_DIR/venv"
CONFIG_DIR=/etc/modemgw
DATA_DIR=/var/lib/modemgw
RULES=/etc/udev/rules.d/99-modemgw.rules
UNIT=/etc/systemd/system/modemgw.service
LINK=/usr/local/bin/modemgw

say() { printf '%-10s %s\n' "$1" "$2"; }
die() { printf 'uninstall.sh: %s\n' "$*" >&2; exit 1; }

purge=false
for argument in "$@"; do
    case "$argument" in
        --purge) purge=true ;;
        -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$argument' (see --help)" ;;
    esac
done

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    die "must run as root to uninstall from the system: sudo $0 (or set DESTDIR for a staging directory)"
fi

system=false
[ -z "$DESTDIR" ] && system=true
systemd_running=false
$system && [ -d /run/systemd/system ] && systemd_running=true

remove() {
    local path="$DESTDIR$1"
    if [ -e "$path" ] || [ -L "$path" ]; then
        rm -rf "$path"
        say removed "$1"
        return 0
    fi
    say absent "$1"
    return 1
}

# 1. Stop the service first: it holds the modems and the database.
if $systemd_running && systemctl cat modemgw.service > /dev/null 2>&1; then
    systemctl disable --now --quiet modemgw.service || true
    say stopped "modemgw.service (and disabled)"
fi
if remove "$UNIT" && $systemd_running; then
    systemctl daemon-reload
    systemctl reset-failed modemgw.service 2> /dev/null || true
fi

# 2. udev rules: the /dev/modemgw names go away at the next trigger; ModemManager may take the modems again.
if remove "$RULES" && $system && udevadm control --ping > /dev/null 2>&1; then
    udevadm control --reload
    udevadm trigger --subsystem-match=tty
    say reloaded "udev rules"
fi

# 3. The command and the application.
if [ -L "$DESTDIR$LINK" ] && [ "$(readlink "$DESTDIR$LINK")" = "$VENV/bin/modemgw" ]; then
    remove "$LINK"
elif [ -e "$DESTDIR$LINK" ] || [ -L "$DESTDIR$LINK" ]; then
    say kept "$LINK (not a link to $VENV; not ours)"
fi
remove "$APP_DIR" || true

# 4. Configuration, data and the user: only with --purge.
if $purge; then
    remove "$CONFIG_DIR" || true
    remove "$DATA_DIR" || true
    if $system && getent passwd "$USER_NAME" > /dev/null; then
        userdel "$USER_NAME"
        say removed "user $USER_NAME"
    fi
else
    for kept in "$CONFIG_DIR" "$DATA_DIR"; do
        if [ -e "$DESTDIR$kept" ]; then
            say kept "$kept (uninstall.sh --purge deletes it)"
        fi
    done
    if $system && getent passwd "$USER_NAME" > /dev/null; then
        say kept "user $USER_NAME (uninstall.sh --purge deletes it)"
    fi
fi
