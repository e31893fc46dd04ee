#!/bin/sh
# Start or stop the dummy monitoring of a host (OpenNebula's dummy.d control script).
#   monitord-client_control.sh [stop] <im_mad> <host_id> <hostname>   (stdin: b64 config)
#
# start prints the first report of every probe as <MONITOR_MESSAGES> and registers the
# host with the shared sender (lib/dummy_monitord_client.py --sender), which keeps
# sending its reports over UDP; stop unregisters it. Plain sh and a few coreutils:
# thousands of hosts are started without an interpreter start-up each.

LIB="$(cd "$(dirname "$0")/../lib" && pwd)"
ACTION=start
if [ "$1" = "stop" ]; then
    ACTION=stop
    shift
fi
HOST_ID="$2"
HOST_NAME="$3"
CONFIG=$(base64 -d 2>/dev/null)
PORT=$(printf '%s' "$CONFIG" | sed -n 's/.*<PORT>\(<!\[CDATA\[\)\{0,1\}\([0-9][0-9]*\).*/\2/p')
PORT=${PORT:-4124}
STATE="${TMPDIR:-/tmp}/one-dummy-monitord-$(id -u)"
HOSTS="$STATE/hosts"
mkdir -p "$HOSTS" || exit 1

if [ "$ACTION" = "stop" ]; then
    rm -f "$HOSTS/$PORT-$HOST_ID"
    exit 0
fi

b64() { base64 -w0; }
NOW=$(date +%s)
SYSTEM=$({ cat "$LIB/dummy_system_host.txt"; echo "HOSTNAME=$HOST_NAME"; } | b64)
MONITOR=$(awk -v seed="$$$NOW" 'BEGIN {
    srand(seed); mem = 16777216; node = mem / 2
    for (n = 0; n < 2; n++) {
        printf "HUGEPAGE = [ SIZE = \"2048\", FREE = \"1024\",  NODE_ID = \"%d\"]\n", n
        printf "HUGEPAGE = [ SIZE = \"1048576\", FREE = \"1024\",  NODE_ID = \"%d\"]\n", n
        printf "MEMORY_NODE = [ NODE_ID = \"%d\", FREE = \"%d\", USED = \"%d\"]\n", n, int(rand() * node), int(rand() * node)
    }
    um = int(rand() * mem); uc = int(rand() * 800)
    printf "USEDMEMORY=%d\nFREEMEMORY=%d\nUSEDCPU=%d\nFREECPU=%d\n", um, mem - um, uc, 800 - uc
    printf "NETTX=1241307203246698\nNETRX=50104108822222\n"
}' | b64)

TMP="$HOSTS/.$PORT-$HOST_ID.$$"
{ echo "$HOST_NAME"; printf '%s\n' "$CONFIG"; } > "$TMP" && mv -f "$TMP" "$HOSTS/$PORT-$HOST_ID"

PID=$(cat "$STATE/sender.pid" 2>/dev/null)
if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
    setsid python3 -S "$LIB/dummy_monitord_client.py" --sender "$STATE" </dev/null >/dev/null 2>&1 &
fi

echo "<MONITOR_MESSAGES><SYSTEM_HOST>$SYSTEM</SYSTEM_HOST><MONITOR_HOST>$MONITOR</MONITOR_HOST><STATE_VM></STATE_VM><EXEC_VM></EXEC_VM><MONITOR_VM></MONITOR_VM><TIMESTAMP>$NOW</TIMESTAMP></MONITOR_MESSAGES>"
