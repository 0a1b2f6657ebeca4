# Step: the workers (`workers`: commands of the app's image with its env, e.g. a job runner and a
# scheduler) swap with the web in one transaction. The new color's workers start with its web
# container and must stay up WORKER_SETTLE_MS before anything switches; a single worker (a
# scheduler) never runs twice: the old one is stopped (its stop signal, its stop timeout) before
# the new one starts, still before the web switches, and on one server only (single_workers: here;
# elsewhere, a server that must not hold them; leave, a prepare for a later promote).
# After the switch the old color's workers get their stop signal and their stop timeout to finish
# the jobs in progress, in the background under the deploy lock. keep-warm keeps the old web
# running, never its workers: a warm worker would go on taking jobs with the old code; a rollback
# starts the kept ones again. Containers: APP-COLOR-NAME.
# Globals: WORKER_*, WORKERS_STARTED_MS, WORKERS_SWAPPED.

WORKER_SETTLE_MS=3000
WORKER_NAMES=()
WORKER_SINGLE=()
WORKER_SIGNAL=()
WORKER_TIMEOUT=()
WORKER_WORDS=() # base64 of the words, NUL-separated
WORKERS_STARTED_MS=0
WORKERS_SWAPPED=0 # the single workers were swapped to the new color on this server

workers_read() {
  local n s sig t w
  WORKER_NAMES=(); WORKER_SINGLE=(); WORKER_SIGNAL=(); WORKER_TIMEOUT=(); WORKER_WORDS=()
  [[ -n "${P[workers]}" ]] || return 0
  while IFS=$'\t' read -r n s sig t w || [[ -n "$n" ]]; do
    [[ -n "$n" ]] || continue
    [[ "$n" =~ ^[a-z0-9][a-z0-9_.-]{0,30}$ && "$s" =~ ^[01]$ && "$sig" =~ ^[A-Z0-9+-]{1,19}$ && "$t" =~ ^[0-9]{1,4}$ ]] \
      || die "parameter workers holds a malformed worker"
    WORKER_NAMES+=("$n"); WORKER_SINGLE+=("$s"); WORKER_SIGNAL+=("$sig"); WORKER_TIMEOUT+=("$t"); WORKER_WORDS+=("$w")
  done < <(printf '%s' "${P[workers]}" | base64 -d)
}

worker_container() { printf '%s-%s-%s' "${P[app]}" "$1" "$2"; } # worker_container COLOR NAME

# The indices of the workers of a kind: regular (not single) or single; single ones only where this
# server runs them.
workers_of() { # workers_of regular|single
  local i
  for i in "${!WORKER_NAMES[@]}"; do
    if [[ "$1" == single ]]; then [[ "${WORKER_SINGLE[$i]}" == 1 && "${P[single_workers]}" == here ]] || continue
    else [[ "${WORKER_SINGLE[$i]}" == 0 ]] || continue; fi
    printf '%s\n' "$i"
  done
}

# Start COLOR's workers of a kind: a rollback starts a kept container of its version again (unless
# it changes what the container was started with); anything else runs a new one.
workers_start() { # workers_start COLOR regular|single
  local color="$1" i name kept words=() out rc
  workers_read
  for i in $(workers_of "$2"); do
    name="$(worker_container "$color" "${WORKER_NAMES[$i]}")"
    if [[ "${P[action]}" == rollback ]] && ! spec_changes_container \
      && kept="$(docker_call inspect -f '{{index .Config.Labels "bg-deploy.version"}} {{.Config.Image}}' "$name" 2>/dev/null)" \
      && [[ "$kept" == "$RUN_VERSION $RUN_IMAGE" ]]; then
      log "worker ${WORKER_NAMES[$i]}: starting the kept $name"
      docker_call start "$name" >/dev/null || workers_failed "$color" "docker start $name failed"
      continue
    fi
    docker_call rm -f "$name" >/dev/null 2>&1 || true
    mapfile -d '' words < <(printf '%s' "${WORKER_WORDS[$i]}" | base64 -d)
    app_run_args
    # the worker's own stop signal and timeout after the app's run arguments: docker takes the last
    log "worker ${WORKER_NAMES[$i]}: starting $name ('${words[*]}'; stop: ${WORKER_SIGNAL[$i]}, ${WORKER_TIMEOUT[$i]}s)"
    rc=0
    out="$(app_env_export; docker_call run -d --name "$name" --init --restart unless-stopped \
      --label "bg-deploy.app=${P[app]}" --label "bg-deploy.color=$color" --label "bg-deploy.version=$RUN_VERSION" \
      --label "bg-deploy.worker=${WORKER_NAMES[$i]}" "${APP_ARGS[@]}" \
      --stop-signal "${WORKER_SIGNAL[$i]}" --stop-timeout "${WORKER_TIMEOUT[$i]}" -- "$RUN_IMAGE" "${words[@]}" 2>&1)" || rc=$?
    app_run_args_done
    ((rc == 0)) || workers_failed "$color" "docker run $name failed: $out"
  done
  WORKERS_STARTED_MS="$(now_ms)"
}

# The workers of a kind must stay up (running, never restarted) WORKER_SETTLE_MS from their start.
workers_settle() { # workers_settle COLOR regular|single
  local color="$1" i name state deadline list
  workers_read
  list="$(workers_of "$2")"
  [[ -n "$list" ]] || return 0
  deadline=$((WORKERS_STARTED_MS + WORKER_SETTLE_MS))
  phase "workers $2 of $color"
  while :; do
    for i in $list; do
      name="$(worker_container "$color" "${WORKER_NAMES[$i]}")"
      state="$(docker_call inspect -f '{{.State.Running}} {{.RestartCount}} {{.State.ExitCode}}' "$name" 2>/dev/null || echo 'gone 0 0')"
      [[ "$state" == 'true 0 '* ]] \
        || workers_failed "$color" "worker ${WORKER_NAMES[$i]} ($name) did not stay up for $((WORKER_SETTLE_MS / 1000))s (running, restarts, exit code: $state)" "$name"
    done
    (($(now_ms) < deadline)) || break
    sleep 0.25
  done
  log "workers ($2) of $color up for $((WORKER_SETTLE_MS / 1000))s: $(for i in $list; do printf '%s ' "${WORKER_NAMES[$i]}"; done)"
}

# Before the switch, on the server that runs them: the old single workers stop (their signal and
# stop timeout: a job in progress ends), then the new ones start and must stay up. A server that
# does not run them stops any it holds (the first server of the run does).
workers_swap_single() { # workers_swap_single FROM TO
  local from="$1" to="$2" i name c
  workers_read
  [[ "${P[single_workers]}" != leave ]] || return 0
  if [[ "${P[single_workers]}" == elsewhere ]]; then
    for i in "${!WORKER_NAMES[@]}"; do
      [[ "${WORKER_SINGLE[$i]}" == 1 ]] || continue
      for c in blue green; do
        name="$(worker_container "$c" "${WORKER_NAMES[$i]}")"
        if container_running_name "$name"; then
          log "worker ${WORKER_NAMES[$i]} is single and runs on the first server of the run only: stopping $name here"
          docker_call stop "$name" >/dev/null 2>&1 || true
        fi
      done
    done
    return 0
  fi
  [[ -n "$(workers_of single)" ]] || return 0
  WORKERS_SWAPPED=1
  if [[ -n "$from" ]]; then
    for i in $(workers_of single); do
      name="$(worker_container "$from" "${WORKER_NAMES[$i]}")"
      if container_running_name "$name"; then
        log "worker ${WORKER_NAMES[$i]} (single): stopping $name first (${WORKER_SIGNAL[$i]}, up to ${WORKER_TIMEOUT[$i]}s)"
        docker_call stop "$name" >/dev/null || workers_failed "$to" "docker stop $name failed"
      fi
    done
  fi
  workers_start "$to" single
  workers_settle "$to" single
}

container_running_name() { [[ "$(docker_call inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" == true ]]; }

# A worker failed before the switch: its last log lines, the new color's workers removed, the old
# single workers back; the caller's color is removed by health_failed's path below. Ends the run.
workers_failed() { # workers_failed COLOR MESSAGE [CONTAINER]
  if [[ -n "${3:-}" ]]; then
    log "last log lines of $3:"
    docker_call logs --tail 20 "$3" >&2 2>&1 || true
  fi
  workers_undo "$1" "$(color_other "$1")"
  container_remove "$1"
  history_add failed-workers "$1"
  die "$2. Nothing was switched: the previous version and its workers are as they were."
}

# Put the workers back as they were before this run: TO's removed (STOP: stopped, kept for their
# logs), FROM's single workers started again if this run stopped them.
workers_undo() { # workers_undo TO FROM [stop]
  local i name
  workers_read
  ((${#WORKER_NAMES[@]} > 0)) || return 0
  for i in "${!WORKER_NAMES[@]}"; do
    name="$(worker_container "$1" "${WORKER_NAMES[$i]}")"
    if [[ "${3:-}" == stop ]]; then docker_call stop "$name" >/dev/null 2>&1 || true
    else docker_call rm -f "$name" >/dev/null 2>&1 || true; fi
  done
  if ((WORKERS_SWAPPED)) && [[ -n "$2" ]]; then
    for i in $(workers_of single); do
      name="$(worker_container "$2" "${WORKER_NAMES[$i]}")"
      log "worker ${WORKER_NAMES[$i]} (single): starting $name again"
      docker_call start "$name" >/dev/null 2>&1 || log "warning: could not start $name again"
    done
  fi
}

# After the switch: FROM's regular workers get their stop signal and their stop timeout, in the
# background; the job holds the deploy lock (it shares its descriptor) until they have stopped.
workers_stop_later() { # workers_stop_later FROM
  local names
  [[ -n "$1" ]] || return 0
  # every running worker of that color, also one the new version no longer has
  names="$(docker_call ps --filter "label=bg-deploy.app=${P[app]}" --filter "label=bg-deploy.color=$1" \
    --filter label=bg-deploy.worker --format '{{.Names}}' 2>/dev/null | paste -sd ' ' -)"
  [[ -n "$names" ]] || return 0
  log "stopping the old workers in the background (each gets its stop signal and stop timeout to finish its jobs): $names"
  (
    exec </dev/null >>"$STATE_DIR/stop.log" 2>&1 7>&1 8>&2
    IN_JOB=1
    trap - EXIT
    local n
    for n in $names; do docker_call stop "$n" >/dev/null 2>&1 & done
    wait
    printf '%s stopped workers %s\n' "$(date -u +%FT%TZ)" "$names"
  ) &
  disown
}
