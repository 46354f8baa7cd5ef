#!/bin/sh
# modemgw.sh: a Zabbix alert script (media type "Script") that sends an alert as an SMS through a modemgw gateway.
# For Zabbix before 6.0, or wherever a webhook is not wanted; Zabbix 6.0+ can import modemgw_media_type.yaml
# instead. POSIX sh and curl (7.55 or later) only. contrib/zabbix/README.md has the setup.
#
#   modemgw.sh SENDTO SUBJECT MESSAGE [EVENT_ID]
#
# Zabbix passes {ALERT.SENDTO} (one number or several, comma-separated: the user's media "Send to"),
# {ALERT.SUBJECT} and {ALERT.MESSAGE}, and optionally {EVENT.ID} (a reference, zabbix-<id>, on the messages).
# The SMS is the subject and the message on two lines (one of them when the other is empty, or when the message
# starts with the subject). It posts to the JSON API (POST /api/v1/messages) with a bearer key, read from
# MODEMGW_CONF (default /etc/zabbix/modemgw.conf, readable by the zabbix user alone):
#   MODEMGW_URL=https://sms.example.lan
#   MODEMGW_KEY=mgw_...
# The environment's MODEMGW_URL and MODEMGW_KEY win over the file. Exit status 0 when queued, else 1 with the
# reason on standard error, which Zabbix shows as the alert's error (and retries it).

set -u

fail() {
    echo "modemgw.sh: $*" >&2
    exit 1
}

# A JSON string for the text of $1: quotes, backslashes and control characters escaped (bytes above 127, UTF-8,
# pass as they are). awk reads lines, so line breaks become \n; a trailing one is dropped.
json_string() {
    printf '%s' "$1" | LC_ALL=C awk '
        BEGIN {
            for (i = 1; i < 32; i++) escape[sprintf("%c", i)] = sprintf("\\u%04x", i)
            escape["\t"] = "\\t"; escape["\r"] = "\\r"; escape["\\"] = "\\\\"; escape["\""] = "\\\""
            printf "\""
        }
        {
            if (NR > 1) printf "\\n"
            n = length($0)
            for (i = 1; i <= n; i++) {
                c = substr($0, i, 1)
                printf "%s", (c in escape) ? escape[c] : c
            }
        }
        END { printf "\"" }'
}

# NAME=value lines of the settings file (read, never sourced); $1 the name.
setting() {
    [ -r "$config" ] || return 0
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$config" | tail -n 1 |
        sed -e 's/[[:space:]]*$//' -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}

# Whether $1 is blank (nothing but white space).
blank() {
    [ -z "$(printf '%s' "$1" | tr -d '[:space:]')" ]
}

[ $# -ge 3 ] || { echo "usage: modemgw.sh SENDTO SUBJECT MESSAGE [EVENT_ID]" >&2; exit 2; }
sendto=$1 subject=$2 message=$3 event=${4:-}

config=${MODEMGW_CONF:-/etc/zabbix/modemgw.conf}
url=${MODEMGW_URL:-$(setting MODEMGW_URL)}
key=${MODEMGW_KEY:-$(setting MODEMGW_KEY)}
[ -n "$url" ] || fail "no gateway URL: set MODEMGW_URL in $config"
[ -n "$key" ] || fail "no API key: set MODEMGW_KEY in $config (readable by the zabbix user alone)"

if blank "$subject"; then
    text=$message
elif blank "$message"; then
    text=$subject
else
    case $message in
        "$subject"*) text=$message ;;
        *) text="$subject
$message" ;;
    esac
fi
blank "$text" && fail "the subject and the message are both empty: nothing to send"

recipients="" IFS_saved=$IFS
IFS=",; "
set -f
for number in $sendto; do
    [ -n "$number" ] && recipients="$recipients${recipients:+, }$(json_string "$number")"
done
set +f
IFS=$IFS_saved
[ -n "$recipients" ] || fail "no number in SENDTO (the user's media 'Send to'): '$sendto'"

body="{\"to\": [$recipients], \"body\": $(json_string "$text")"
case $event in
    "" | *[!0-9]*) ;;
    *) body="$body, \"client_ref\": \"zabbix-$event\"" ;;
esac
body="$body}"

# The key goes to curl in a header file readable by this user alone, not on its command line (ps shows that).
umask 077
headers=$(mktemp) || fail "cannot make a temporary file"
answer=$(mktemp) || { rm -f "$headers"; fail "cannot make a temporary file"; }
trap 'rm -f "$headers" "$answer"' EXIT
trap 'exit 1' HUP INT TERM
printf 'Authorization: Bearer %s\nContent-Type: application/json\n' "$key" >"$headers"

status=$(printf '%s' "$body" | curl --silent --show-error --max-time "${MODEMGW_TIMEOUT:-20}" \
    --header "@$headers" --data-binary @- --output "$answer" --write-out '%{http_code}' \
    "${url%/}/api/v1/messages") || fail "cannot reach the gateway at $url (curl failed, above)"

case $status in
    202)
        ids=$(sed -n 's/.*"messages": *\[\(.*\)\], *"skipped".*/\1/p' "$answer" | tr ',' '\n' |
            sed -n 's/.*"id": *\([0-9][0-9]*\).*/\1/p' | tr '\n' ' ')
        [ -n "$ids" ] || fail "nothing was queued: $(cat "$answer")"
        echo "queued: message ${ids% }"
        ;;
    *)
        detail=$(sed -n 's/.*"detail": *"\([^"]*\)".*/\1/p' "$answer")
        fail "the gateway answered $status: ${detail:-$(cat "$answer")}"
        ;;
esac
