#!/bin/sh
# Start or stop the dummy monitoring client of a host.
#   monitord-client_control.sh [stop] <im_mad> <host_id> <hostname>   (stdin: b64 config)
exec python3 "$(dirname "$0")/../lib/dummy_monitord_client.py" "$@"
