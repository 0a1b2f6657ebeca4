# Step: stop the old color (kept for a fast rollback) and prune images, in the background.

# After the result: stop the old color (kept, stopped, for a fast rollback) and prune images in the
# background, so the run does not wait for docker's container teardown. The background job holds
# the app's lock (it shares the lock's file descriptor), so the next deploy or rollback of this app
# waits for it; its output goes to $STATE_DIR/stop.log.
stop_later() { # stop_later [OLD_COLOR] [SECONDS_TO_WAIT_FIRST]
  local name='' wait="${2:-0}" after=''
  if [[ -n "${1:-}" ]] && container_running "$1"; then name="$(container_name "$1")"; fi
  if [[ -n "$name" && "${P[keep_warm]}" != 0 ]]; then keep_warm "$1"; return 0; fi
  if [[ "$wait" != 0 ]]; then after=" after ${wait}s"; fi
  if [[ -n "$name" ]]; then log "stopping $name (kept for a fast rollback) in the background$after; the deploy lock is held until it has stopped"; fi
  (
    exec </dev/null >>"$STATE_DIR/stop.log" 2>&1 7>&1 8>&2
    IN_JOB=1
    trap - EXIT
    printf '%s stop %s\n' "$(date -u +%FT%TZ)" "${name:-(none)}"
    if [[ -n "$name" && "$wait" != 0 ]]; then sleep "$wait"; fi
    if [[ -n "$name" ]]; then docker_call stop -t 10 "$name" >/dev/null || echo "warning: docker stop $name failed"; fi
    stop_prune_images
  ) &
  disown
}

# Keep the images of the last three versions and those the blue/green containers use;
# only this app's repository is looked at.
stop_prune_images() {
  local repo="${RUN_IMAGE%:*}" in_use='' ref id kept=0 c
  for c in blue green; do in_use+=" $(docker_call inspect -f '{{.Image}}' "$(container_name "$c")" 2>/dev/null || true)"; done
  while read -r ref id; do
    [[ "$ref" == *:latest || "$ref" == *'<none>'* ]] && continue
    [[ "$in_use" == *"$id"* ]] && continue
    kept=$((kept + 1))
    ((kept <= 3)) && continue
    if docker_call rmi "$ref" >/dev/null 2>&1; then log "removed old image $ref"; fi
  done < <(docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' "$repo" 2>/dev/null)
}

# keep-warm: the old color keeps running for keep_warm seconds, so a rollback within them is a
# switch only, then stops by itself. The background job prunes images under the deploy lock, lets
# the lock go while it waits, and takes it again to stop the container, but only if it is the
# same container and still not serving: a later deploy or rollback may have taken it over.
keep_warm() { # keep_warm OLD_COLOR
  local color="$1" name id wait="${P[keep_warm]}"
  name="$(container_name "$color")"
  id="$(docker_call inspect -f '{{.Id}}' "$name" 2>/dev/null || true)"
  log "$name stays running (warm) for ${wait}s: a rollback within them is a switch only; then it stops by itself"
  (
    exec </dev/null >>"$STATE_DIR/stop.log" 2>&1 7>&1 8>&2
    IN_JOB=1
    trap - EXIT
    printf '%s keep %s warm for %ss\n' "$(date -u +%FT%TZ)" "$name" "$wait"
    stop_prune_images
    exec 9>&-
    sleep "$wait"
    exec 9>>"$STATE_DIR/lock"
    flock -w "${P[lock_timeout]}" 9 || { echo "warning: no lock within ${P[lock_timeout]}s; $name left running"; exit 0; }
    if [[ "$(state_get color)" == "$color" ]]; then
      echo "$name serves again (a rollback took it over): not stopped"
    elif [[ "$(docker_call inspect -f '{{.Id}} {{.State.Running}}' "$name" 2>/dev/null)" != "$id true" ]]; then
      echo "$name was replaced or stopped since: nothing to do"
    else
      docker_call stop -t 10 "$name" >/dev/null || echo "warning: docker stop $name failed"
      printf '%s stopped %s after keeping it warm\n' "$(date -u +%FT%TZ)" "$name"
    fi
  ) &
  disown
}
