# The storage stack of deploy/smoke.sh, which sources this file (and whose helpers it uses:
# use_stack, dc, containers, check, post, finish, the checks both stacks share). Compose's
# `storage` profile (SeaweedFS's `weed` from its wheel, the Dockerfile's `storage` target)
# with deploy/compose.storage.yml: photos and results are objects in that store, and web,
# workers and dispatcher share no uploads volume. Checked:
#   /healthz 200, and /readyz 200 naming the store (kind s3, its bucket, ok);
#   every service runs, the store included, never restarted;
#   web, workers, dispatcher and deliverer share no volume (their containers' mounts, inspected);
#   a scoring task ends ready (the worker reads the photo from the store); a resize task's URL
#   serves the image; the photo and the result are objects under STORAGE_URL's prefix
#   (listed with the S3 API and the keys the services were given);
#   DELETE of the two tasks removes them and every object of theirs;
#   the store killed: POST answers 503 with Retry-After (and /readyz 503);
#   the store started again: a new task is taken and ends ready, and no other container
#   restarted meanwhile;
#   the whole stack stops (the services, then valkey and the store) with every container
#   exiting 0; `down -v` leaves no container or volume.

stored_keys() {  # stored_keys: the object keys under STORAGE_URL's prefix, without it, one a line
  # listed from the web's container with its own settings (endpoint, bucket, keys)
  $engine exec "$(containers web)" python -c '
import os
from urllib.parse import urlsplit
from minio import Minio
store, endpoint = urlsplit(os.environ["STORAGE_URL"]), urlsplit(os.environ["S3_ENDPOINT_URL"])
prefix = store.path.strip("/") + "/"
client = Minio(endpoint.netloc, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
               secure=endpoint.scheme == "https", region=os.environ["AWS_REGION"])
for item in client.list_objects(store.netloc, prefix=prefix, recursive=True):
    print(item.object_name[len(prefix):])' 2>> "$stack_logs/stored.log" \
    || echo "(the listing failed: $stack_logs/stored.log)"
}

volumes_of() {  # volumes_of SERVICE: the named volumes its containers mount, one a line
  local id
  for id in $(containers "$1"); do
    $engine inspect --format '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}}{{println}}{{end}}{{end}}' "$id"
  done | sort -u | sed '/^$/d'
}

volumes_check() {  # volumes_check: no volume is mounted by two of web, worker, dispatcher, deliverer
  local kind shared detail="" all
  for kind in web worker dispatcher deliverer; do
    detail+="${detail:+; }$kind: $(volumes_of "$kind" | sed "s/^${project}_//" | paste -sd, -)"
  done
  all=$(for kind in web worker dispatcher deliverer; do volumes_of "$kind"; done)
  shared=$(sort <<< "$all" | uniq -d | paste -sd, -)
  detail+="${shared:+; shared: $shared}"
  if [ -z "$shared" ] && [ -n "$(volumes_of web)" ]; then
    pass "web, workers, dispatcher and deliverer share no volume" "$detail"
  else
    fail "web, workers, dispatcher and deliverer share no volume" "$detail"
  fi
}

outage_check() {  # outage_check: the store killed, POST answers 503 with Retry-After
  local status ready retry_after detail
  $engine kill "$(containers storage)" > /dev/null 2>> "$stack_logs/outage.log"
  post width=24 > /dev/null
  status=$(cat "$tmp/created.status")
  retry_after=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' "$tmp/created.headers")
  ready=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url/readyz")
  detail="POST $status, Retry-After: ${retry_after:-none}; /readyz $ready; $(field "$tmp/created.json" error)"
  if [ "$status:$ready" = 503:503 ] && [ -n "$retry_after" ]; then
    pass "the store killed: POST answers 503 with Retry-After" "$detail"
  else
    fail "the store killed: POST answers 503 with Retry-After" "$detail"
  fi
}

back_check() {  # back_check: the store started again, a new task is taken and ends ready
  local t taken="" status detail deadline=$((SECONDS + 90))
  t=$(date +%s.%N)
  $engine start "$(containers storage)" > /dev/null 2>> "$stack_logs/outage.log"
  while [ $SECONDS -lt $deadline ]; do
    task=$(post width=40)
    case "$(cat "$tmp/created.status")" in 20?) taken=$(elapsed "$t"); break ;; esac
    sleep 0.5
  done
  status=$(finish "$task")
  detail="taken ${taken:-never} s after the start, $status in $(elapsed "$t") s"
  if [ -n "$taken" ] && [ "$status" = ready ]; then
    pass "the store started again: a new task ends ready" "$detail"
  else
    fail "the store started again: a new task ends ready" "$detail"
  fi
}

storage_stack() {
  local status detail scoring digest keys result_key deleted
  use_stack storage
  # the store's one identity and the services' keys, the script's own
  export AWS_ACCESS_KEY_ID=smoke AWS_SECRET_ACCESS_KEY=smoke-$RANDOM$RANDOM$RANDOM
  [ "$network" = host ] && export S3_ENDPOINT_URL=http://127.0.0.1:$STORAGE_S3_PORT
  say "--- stack: storage (${profiles[*]}; ${files[*]})"
  up_check
  status=$(wait_for 60 /readyz)
  detail="$([ "$status" = 200 ] || echo "got $status: ")storage: $(field "$tmp/answer.json" storage)"
  if [ "$status" = 200 ] && [ "$(field "$tmp/answer.json" storage kind)" = s3 ] \
     && [ "$(field "$tmp/answer.json" storage status)" = ok ] && [ -n "$(field "$tmp/answer.json" storage bucket)" ]; then
    pass "/readyz 200, names the store" "$detail"
  else
    fail "/readyz 200, names the store" "$detail"
  fi
  running_check
  volumes_check

  scoring_check
  scoring=$task
  resize_check
  digest=$(sha256sum "$tmp/photo.jpg" | cut -d' ' -f1)
  result_key=results/${result_url#/files/}
  keys=$(stored_keys)
  detail=$(paste -sd' ' <<< "$keys" | cut -c1-160)
  if grep -qx "photos/$digest" <<< "$keys" && grep -qx "$result_key" <<< "$keys"; then
    pass "the photo and the result are objects in the store" "$detail"
  else
    fail "the photo and the result are objects in the store" "$detail"
  fi

  deleted=$(for id in "$task" "$scoring"; do
    curl -s -o /dev/null -w '%{http_code} ' --max-time 10 -X DELETE "$url/?task_id=$id"
    curl -s -o /dev/null -w '%{http_code} ' --max-time 10 "$url/?task_id=$id"
  done; curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url$result_url")
  keys=$(stored_keys)
  check "DELETE removes the tasks and their objects" \
    "DELETE, GET of each task, GET of the result: $deleted; left in the store: $(paste -sd' ' <<< "${keys:-nothing}")" \
    [ "$deleted:$keys" = "200 404 200 404 404:" ]

  outage_check
  back_check
  running_check "(after the store's outage)"

  stops_check web worker dispatcher deliverer dashboard scorer-sim
  down_check
  stack_done
}
