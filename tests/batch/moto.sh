#!/usr/bin/env bash
# Starts or stops a moto_server (AWS emulator) on 127.0.0.1:PORT for the
# AWS Batch tests.
#
# Usage: tests/batch/moto.sh start|stop|status PORT
#
# Batch jobs run as docker containers started by moto. MOTO_DOCKER_NETWORK_MODE=host
# puts them in the host's network namespace so a job reaches moto (S3, logs)
# at http://127.0.0.1:PORT, the only kind of address traffic may go to here.
# MOTO_PORT tells moto the port to advertise to jobs (MOTO_PORT/MOTO_HTTP_ENDPOINT
# in their environment); `moto_server -p` alone does not set it.
# Then point the SDK at it: AWS_ENDPOINT_URL=http://127.0.0.1:PORT, any
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION=us-east-1.
set -euo pipefail

cmd=${1:-}
port=${2:-}
if [[ -z $cmd || ! $port =~ ^[0-9]+$ ]]; then
  echo "usage: $0 start|stop|status PORT" >&2
  exit 2
fi
state=${TMPDIR:-/tmp}/metaflow-moto-$port
pidfile=$state.pid
logfile=$state.log

answers() {
  # Any HTTP answer will do; the dashboard path needs no AWS signature.
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/moto-api/data.json"
}

running() {
  [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

case $cmd in
start)
  if running; then
    echo "moto: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
    exit 0
  fi
  command -v moto_server >/dev/null || { echo "moto: moto_server not found (pip install 'moto[server]')" >&2; exit 1; }
  if answers; then
    echo "moto: something else already answers on 127.0.0.1:$port" >&2
    exit 1
  fi
  # setsid: its own process group, so stop can end it and only it.
  MOTO_DOCKER_NETWORK_MODE=host MOTO_PORT=$port \
    setsid moto_server -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    if answers; then
      echo "moto: running on 127.0.0.1:$port (pid $(cat "$pidfile"), log $logfile)"
      exit 0
    fi
    if ! running; then
      echo "moto: exited during start-up:" >&2
      tail -n 20 "$logfile" >&2
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.1
  done
  echo "moto: no answer on 127.0.0.1:$port after 15s" >&2
  kill -- "-$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
  exit 1
  ;;
stop)
  if ! running; then
    echo "moto: not running on port $port"
    rm -f "$pidfile"
    exit 0
  fi
  pid=$(cat "$pidfile")
  # The whole group: moto_server's reloader child, if any, too.
  kill -- "-$pid" 2>/dev/null || kill "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -9 -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "moto: stopped (pid $pid)"
  ;;
status)
  if running && answers; then
    echo "moto: running on 127.0.0.1:$port (pid $(cat "$pidfile"))"
  else
    echo "moto: not running on port $port"
    exit 1
  fi
  ;;
*)
  echo "usage: $0 start|stop|status PORT" >&2
  exit 2
  ;;
esac
