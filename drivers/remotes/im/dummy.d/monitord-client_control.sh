#!/bin/sh
# Start or stop the dummy monitoring of a host (OpenNebula's dummy.d control script).
#   monitord-client_control.sh [stop] <im_mad> <host_id> <hostname>   (stdin: b64 config)
#
# start prints the first report of every probe as <MONITOR_MESSAGES> and registers the
# host with the shared sender (lib/dummy_monitord_client.py --sender), which keeps
# sending its reports over UDP; stop unregisters it. A registration is a file
# <driver pid>-<host id> holding the host name and the base64 configuration. Plain sh
# and one awk: thousands of hosts start without an interpreter start-up each.

HERE=${0%/*}
[ "$HERE" = "$0" ] && HERE=.
LIB="$HERE/../lib"
ACTION=start
if [ "$1" = "stop" ]; then
    ACTION=stop
    shift
fi
HOST_ID="$2"
HOST_NAME="$3"
read -r CONFIG
STATE="${TMPDIR:-/tmp}/one-dummy-monitord2-${LOGNAME:-$(id -u)}"
HOSTS="$STATE/hosts"
[ -d "$HOSTS" ] || mkdir -p "$HOSTS" || exit 1
KEY="${IM_DRIVER_PID:-0}-$HOST_ID"

if [ "$ACTION" = "stop" ]; then
    rm -f "$HOSTS/$KEY"
    exit 0
fi

# one small write: the sender ignores a file it finds still empty and reads it again
printf '%s\n%s\n' "$HOST_NAME" "$CONFIG" > "$HOSTS/$KEY"

PID=
read -r PID < "$STATE/sender.pid" 2>/dev/null
if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
    setsid python3 -S "$LIB/dummy_monitord_client.py" --sender "$STATE" </dev/null >/dev/null 2>&1 &
fi

# The SYSTEM_HOST report is the static part (base64 of a multiple of 3 bytes, so that
# base64 strings concatenate) followed by the HOSTNAME line; MONITOR_HOST is random.
exec awk -v host="$HOST_NAME" -v now="$(date +%s)" -v seed="$$" -v static="$LIB/dummy_system_host.b64" '
function b64(s,    out, i, n, c2, c3, t) {
    n = length(s); out = ""
    for (i = 1; i <= n; i += 3) {
        c2 = (i + 1 <= n) ? ord[substr(s, i + 1, 1)] : 0
        c3 = (i + 2 <= n) ? ord[substr(s, i + 2, 1)] : 0
        t = ord[substr(s, i, 1)] * 65536 + c2 * 256 + c3
        out = out substr(B, int(t / 262144) % 64 + 1, 1) substr(B, int(t / 4096) % 64 + 1, 1)
        out = out ((i + 1 <= n) ? substr(B, int(t / 64) % 64 + 1, 1) : "=")
        out = out ((i + 2 <= n) ? substr(B, t % 64 + 1, 1) : "=")
    }
    return out
}
BEGIN {
    B = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i
    getline sys < static
    srand(seed + now); mem = 16777216; node = mem / 2; m = ""
    for (n = 0; n < 2; n++) {
        m = m sprintf("HUGEPAGE = [ SIZE = \"2048\", FREE = \"1024\",  NODE_ID = \"%d\"]\n", n)
        m = m sprintf("HUGEPAGE = [ SIZE = \"1048576\", FREE = \"1024\",  NODE_ID = \"%d\"]\n", n)
        m = m sprintf("MEMORY_NODE = [ NODE_ID = \"%d\", FREE = \"%d\", USED = \"%d\"]\n", n, int(rand() * node), int(rand() * node))
    }
    um = int(rand() * mem); uc = int(rand() * 800)
    m = m sprintf("USEDMEMORY=%d\nFREEMEMORY=%d\nUSEDCPU=%d\nFREECPU=%d\n", um, mem - um, uc, 800 - uc)
    m = m "NETTX=1241307203246698\nNETRX=50104108822222\n"
    printf "<MONITOR_MESSAGES><SYSTEM_HOST>%s%s</SYSTEM_HOST>", sys, b64("HOSTNAME=" host "\n")
    printf "<MONITOR_HOST>%s</MONITOR_HOST><STATE_VM></STATE_VM><EXEC_VM></EXEC_VM>", b64(m)
    printf "<MONITOR_VM></MONITOR_VM><TIMESTAMP>%d</TIMESTAMP></MONITOR_MESSAGES>\n", now
}'
