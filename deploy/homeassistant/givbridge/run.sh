#!/usr/bin/with-contenv sh
# The add-on's main program. s6-overlay (the base image's /init) runs it; with-contenv hands
# on the environment the Supervisor set, SUPERVISOR_TOKEN and TZ included.
#
# givbridge reads everything else itself: the add-on options from /data/options.json and
# the MQTT broker from the Supervisor (givbridge/addon.py); its state lives in /data.
set -e

# The optional HTTP shim must listen on the container's interface for a mapped host port
# (or another add-on) to reach it; the port stays unpublished unless the user maps it.
export GIVBRIDGE_HTTP__HOST=0.0.0.0

exec givbridge run
