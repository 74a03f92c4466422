#!/usr/bin/env bash
# Runs on every worker of a TPU VM (started by launch.sh, from the copied checkout): the sweep
# command given, its output into sweep-<host>.log, copied to LOGS (gs://) every minute and at
# the end, and its exit status into LOGS/exit-<host> (launch.sh --watch reads it: 0 finished,
# 143 stopped by SIGTERM, a preemption; anything else failed).
#
#   bash experiments/tpu/worker.sh LOGS COMMAND [ARGS...]
set -uo pipefail

if [ "$#" -lt 2 ]; then
  sed -n '2,7p' "$0" >&2
  exit 2
fi
logs=$1
shift
host=$(hostname)
log=sweep-$host.log
gcloud storage rm -q "$logs/exit-$host" 2>/dev/null || true
(while sleep 60; do gcloud storage cp -q "$log" "$logs/" || true; done) &
copier=$!
"$@" >"$log" 2>&1
rc=$?
kill "$copier"
gcloud storage cp -q "$log" "$logs/" || true
echo "$rc" | gcloud storage cp - "$logs/exit-$host"
exit "$rc"
