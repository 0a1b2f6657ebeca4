# engine: swarm — the server is a Docker Swarm manager and the app is a service named after it:
# created the first time, then updated to each new image with start-first order, rollback on
# failure and a monitor period. The run waits until Swarm converged, and fails with the reason
# (the update status, the failing tasks' errors, their last log lines) when Swarm rolled it back:
# Swarm's own CLI exits 0 then (docker/cli#6752). State and history are kept as for ssh.

swarm_check() {
  local st
  st="$(docker_call info -f '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null || true)"
  [[ "$st" == 'active true' ]] \
    || die "engine swarm needs a Swarm manager: the Docker engine on this server is not one (swarm state: ${st:-unknown}). Run 'docker swarm init' here, or point host at a manager node. Nothing was changed."
}

# The service a step works on: the app's (the web), or SWARM_SVC while a worker's is updated.
SWARM_SVC=''
SWARM_UPDATED_WORKERS=() # workers' services this run updated (a failure rolls them back)
swarm_service() { printf '%s' "${SWARM_SVC:-${P[app]}}"; }

# A variable the docker CLI, the dynamic linker or bash read themselves (the same list as the
# action's check of env, src/config-app.ts): it cannot carry an app's value into the CLI.
swarm_env_name_ok() { # swarm_env_name_ok NAME
  local n="${1^^}"
  case "$n" in PATH | HOME | IFS | ENV | TMPDIR | SHELLOPTS | BASHOPTS | BASH_* | LD_* | DOCKER_* | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | ALL_PROXY) return 1 ;; esac
}

# The env values for a `docker service create`, one line each in an owner-only file in the
# owner-only state directory (main_swarm has EXIT remove it too; the caller removes it once docker
# has read it):
# prints its path, or nothing without env.
swarm_env_file() {
  ((${#ENV_KEYS[@]} > 0)) || return 0
  local f="$STATE_DIR/.env.$$" i
  : >"$f"
  for i in "${!ENV_KEYS[@]}"; do printf '%s=%s\n' "${ENV_KEYS[$i]}" "${ENV_VALUES[$i]%x}" >>"$f"; done
  printf '%s' "$f"
}

# The service's settings both create and update take.
swarm_settings() { # prints one argument per line
  local monitor="${P[watch]}"
  ((monitor > 0)) || monitor=5
  printf '%s\n' --update-order start-first --update-failure-action rollback --update-monitor "${monitor}s" \
    --update-parallelism "${P[max_parallel]}" --rollback-order start-first --rollback-parallelism "${P[max_parallel]}" \
    --stop-grace-period "${P[drain_timeout]%.*}s"
  if [[ -n "${P[health_cmd]}" ]]; then
    local every="${P[health_interval]}"
    if awk -v i="$every" 'BEGIN { exit !(i < 1) }'; then every=1; fi
    printf '%s\n' --health-cmd "${P[health_cmd]}" --health-interval "${every}s" --health-timeout 2s \
      --health-retries 3 --health-start-period "${P[health_timeout]%.*}s"
  fi
}

# compose-file's settings (src/compose-swarm.ts: `docker service create` arguments, carried as the
# run arguments so a rollback puts them back as they ran), in the form a FORM (create, update) of a
# KIND (service: the web; worker; task: the one-off job) takes: update adds and replaces by key
# (`--mount-add` replaces the mount at the same target) and cannot change networks; a worker or
# the job leaves out what is the web service's own (replicas, update and rollback settings,
# service labels) and its stop settings; the job its health check and restart policy too.
swarm_args() { # swarm_args KIND FORM: prints each argument NUL-terminated
  local i=0 opt val
  while ((i < ${#RUN_ARGS[@]})); do
    opt="${RUN_ARGS[$i]}"
    if [[ "$opt" == *=* ]]; then val=''; i=$((i + 1)); else val="${RUN_ARGS[$((i + 1))]}"; i=$((i + 2)); fi
    if [[ "$1" != service ]]; then
      case "$opt" in
        --replicas | --update-* | --rollback-* | --endpoint-mode | --label | --stop-signal | --stop-grace-period) continue ;;
      esac
      if [[ "$1" == task ]]; then case "$opt" in --health-* | --restart-*) continue ;; esac; fi
    fi
    if [[ "$2" == update ]]; then
      case "$opt" in
        --network) continue ;;
        --mount | --host | --container-label | --label | --ulimit | --constraint | --placement-pref) opt+=-add ;;
      esac
    elif [[ "$opt" == --network && "$val" == "${P[network]}" ]]; then continue # given once
    fi
    printf '%s\0' "$opt"
    if [[ "$opt" != *=* ]]; then printf '%s\0' "$val"; fi
  done
}

# Create or update the service to RUN_IMAGE as RUN_VERSION, and wait until Swarm converged.
swarm_deploy() {
  local svc cfg args=() line rc=0 out limit secret_env='' created=0
  svc="$(swarm_service)"
  registry_login
  cfg="$REGISTRY_CONFIG"
  while IFS= read -r line; do args+=("$line"); done < <(swarm_settings)
  local command=() cmdq='' w
  mapfile -d '' command < <(printf '%s' "${P[command]}" | base64 -d)
  for w in "${command[@]}"; do cmdq+=" $(swarm_quote "$w")"; done
  if ((${#ENV_KEYS[@]} > 0)); then
    local i
    for i in "${!ENV_KEYS[@]}"; do
      [[ "${ENV_VALUES[$i]}" != *[$'\n\r']* ]] || die "engine swarm takes env values of one line; ${ENV_KEYS[$i]} spans lines (use a Docker secret for it)"
      swarm_env_name_ok "${ENV_KEYS[$i]}" || die "engine swarm hands env values to the docker CLI through its environment, so ${ENV_KEYS[$i]}, a variable the CLI or bash reads itself, cannot be one. Rename it, or put it in env-file on the server. Nothing was changed."
    done
  fi
  limit=$(( ${P[health_timeout]%.*} + P[watch] + 60 ))
  phase "swarm service $svc"
  event started
  if docker_call service inspect "$svc" >/dev/null 2>&1; then
    log "updating service $svc to $RUN_IMAGE (start-first; Swarm rolls back on failure)"
    # `--env-add KEY` without a value: the docker CLI reads the value from its own environment,
    # set in this subshell only, so no value is in any process's arguments (ps, /proc/*/cmdline)
    for i in "${!ENV_KEYS[@]}"; do args+=(--env-add "${ENV_KEYS[$i]}"); done
    while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args service update)
    out="$(docker_bin="$(command -v docker)"
      for i in "${!ENV_KEYS[@]}"; do export "${ENV_KEYS[$i]}=${ENV_VALUES[$i]%x}"; done
      timeout "$limit" "$docker_bin" ${cfg:+--config "$cfg"} service update --quiet --with-registry-auth --image "$RUN_IMAGE" \
      --args "${cmdq# }" --container-label-add "bg-deploy.version=$RUN_VERSION" "${args[@]}" -- "$svc" 2>&1)" || rc=$?
  else
    log "creating service $svc from $RUN_IMAGE with ${P[replicas]} replica(s)"
    created=1
    secret_env="$(swarm_env_file)"
    if [[ -n "$secret_env" ]]; then args+=(--env-file "$secret_env"); fi
    if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
    if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
    while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args service create)
    out="$(timeout "$limit" docker ${cfg:+--config "$cfg"} service create --quiet --with-registry-auth --name "$svc" \
      --replicas "${P[replicas]}" --label "bg-deploy.app=${P[app]}" --container-label "bg-deploy.version=$RUN_VERSION" \
      "${args[@]}" -- "$RUN_IMAGE" "${command[@]}" 2>&1)" || rc=$?
  fi
  if [[ -n "$secret_env" ]]; then rm -f "$secret_env"; fi
  if ((rc != 0)); then
    local why="docker service failed: $out"
    if ((rc == 124)); then why="Swarm did not converge within ${limit}s"; fi
    # a first deploy that never converged leaves nothing behind: nothing served before it
    swarm_failed "$why" "$created"
  fi
  swarm_converged "$limit"
}

# After the CLI returned: did the update complete, or did Swarm roll it back? The CLI returns as
# a rollback starts; the run waits for it to end (up to LIMIT seconds), keeping Swarm's reason.
swarm_converged() { # swarm_converged LIMIT
  local svc state msg why='' deadline
  svc="$(swarm_service)"
  deadline=$(( $(now_ms) + $1 * 1000 ))
  while :; do
    IFS='|' read -r state msg <<<"$(docker_call service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}{{end}}' "$svc" 2>/dev/null)"
    if [[ "$state" == rollback_* && -z "$why" && -n "$msg" ]]; then why="$msg"; fi
    [[ "$state" == updating || "$state" == rollback_started ]] || break
    if (($(now_ms) >= deadline)); then swarm_failed "Swarm was still in state $state after ${1}s: ${why:-$msg}"; fi
    sleep 0.5
  done
  case "$state" in
    '' | completed) ;;
    rollback_completed) swarm_failed "Swarm rolled the update to $RUN_IMAGE back: ${why:-no reason given}" ;;
    *) swarm_failed "Swarm left the update to $RUN_IMAGE in state $state: ${why:-${msg:-no reason given}}" ;;
  esac
  log "service $svc converged on $RUN_IMAGE"
  [[ -z "$SWARM_SVC" ]] || return 0
  event healthy
  event switched
}

swarm_failed() { # swarm_failed WHY [REMOVE]: the failing tasks, their last log lines, history, then die
  local svc task_error; svc="$(swarm_service)"
  task_error="$(docker_call service ps "$svc" --no-trunc --filter desired-state=shutdown --format '{{.Error}}' 2>/dev/null | grep -m1 . || true)"
  log "tasks of $svc that did not run:"
  docker_call service ps "$svc" --no-trunc --filter desired-state=shutdown \
    --format '{{.Name}} {{.Image}} {{.CurrentState}} {{.Error}}' 2>&1 | head -n 6 >&2 || true
  log "last log lines of $svc:"
  docker_call service logs --raw --tail 10 "$svc" >&2 2>&1 || true
  history_add failed-swarm
  if [[ -n "$SWARM_SVC" ]]; then swarm_workers_failed "$1${task_error:+ (a task failed: $task_error)}"; fi
  if [[ "${2:-0}" == 1 ]]; then
    docker_call service rm "$svc" >/dev/null 2>&1 || true
    die "$1${task_error:+ (a task failed: $task_error)}. The service was new, so it was removed: nothing of ${P[app]} runs."
  fi
  die "$1${task_error:+ (a task failed: $task_error)}. $(swarm_serving)"
}

swarm_serving() { # what serves now, for a message
  local img
  img="$(docker_call service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$(swarm_service)" 2>/dev/null || true)"
  if [[ -n "$img" ]]; then printf 'The service runs %s.' "${img%@*}"; else printf 'The service does not exist.'; fi
}

# Workers on Swarm: each a service of its own, APP-NAME, updated after the web service converged,
# to the same image and env: start-first (the new task runs before the old one stops) for a regular
# worker; one replica and stop-first for a single one (its old task has stopped before the new one
# starts: never two). Swarm rolls a worker back when its new tasks fail within the update monitor;
# the run then rolls the web service and the workers it updated back too, so the app is never left
# half on the new version. A worker no longer listed has its service removed.
swarm_workers() {
  local i i2 svc words=() args=() rc out q w keep=' ' limit line
  workers_read
  limit=$(( ${P[health_timeout]%.*} + 60 ))
  for i in "${!WORKER_NAMES[@]}"; do
    svc="${P[app]}-${WORKER_NAMES[$i]}"; keep+="$svc "
    mapfile -d '' words < <(printf '%s' "${WORKER_WORDS[$i]}" | base64 -d)
    args=()
    if [[ "$(docker_call service inspect "$svc" --format x 2>/dev/null)" == x ]]; then
      while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args worker update)
    else
      while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args worker create)
    fi
    args+=(--update-failure-action rollback --update-monitor 5s --stop-signal "${WORKER_SIGNAL[$i]}"
      --stop-grace-period "${WORKER_TIMEOUT[$i]}s" --rollback-order stop-first)
    if [[ "${WORKER_SINGLE[$i]}" == 1 ]]; then args+=(--update-order stop-first --replicas 1)
    else args+=(--update-order start-first); fi
    SWARM_SVC="$svc"
    phase "swarm worker $svc"
    rc=0
    if docker_call service inspect "$svc" >/dev/null 2>&1; then
      # --args is one string the docker CLI splits like a shell: each word single-quoted
      q=''; for w in "${words[@]}"; do q+=" $(swarm_quote "$w")"; done
      for i2 in "${!ENV_KEYS[@]}"; do args+=(--env-add "${ENV_KEYS[$i2]}"); done
      log "worker ${WORKER_NAMES[$i]}: updating service $svc to $RUN_IMAGE ($([[ "${WORKER_SINGLE[$i]}" == 1 ]] && echo 'single: stop-first, one task' || echo start-first))"
      out="$(docker_bin="$(command -v docker)"
        for i2 in "${!ENV_KEYS[@]}"; do export "${ENV_KEYS[$i2]}=${ENV_VALUES[$i2]%x}"; done
        timeout "$limit" "$docker_bin" ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} service update --quiet --with-registry-auth \
          --image "$RUN_IMAGE" --args "${q# }" --container-label-add "bg-deploy.version=$RUN_VERSION" "${args[@]}" -- "$svc" 2>&1)" || rc=$?
    else
      local secret_env
      secret_env="$(swarm_env_file)"
      if [[ -n "$secret_env" ]]; then args+=(--env-file "$secret_env"); fi
      if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
      if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
      log "worker ${WORKER_NAMES[$i]}: creating service $svc from $RUN_IMAGE"
      out="$(timeout "$limit" docker ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} service create --quiet --with-registry-auth --name "$svc" \
        --label "bg-deploy.app=${P[app]}" --label "bg-deploy.worker=${WORKER_NAMES[$i]}" --container-label "bg-deploy.version=$RUN_VERSION" \
        "${args[@]}" -- "$RUN_IMAGE" "${words[@]}" 2>&1)" || rc=$?
      if [[ -n "$secret_env" ]]; then rm -f "$secret_env"; fi
    fi
    SWARM_UPDATED_WORKERS+=("$svc")
    if ((rc != 0)); then
      local why="docker service failed: $out"
      if ((rc == 124)); then why="Swarm did not converge within ${limit}s"; fi
      swarm_failed "$why"
    fi
    swarm_converged "$limit"
  done
  SWARM_SVC=''
  # the services of workers this version no longer has
  while IFS= read -r svc; do
    [[ -n "$svc" && "$keep" != *" $svc "* ]] || continue
    log "service $svc runs a worker this version does not have: removed"
    docker_call service rm "$svc" >/dev/null 2>&1 || log "warning: could not remove $svc"
  done < <(docker_call service ls --filter "label=bg-deploy.app=${P[app]}" --filter label=bg-deploy.worker --format '{{.Name}}' 2>/dev/null)
}

swarm_quote() { local w="$1"; printf "'%s'" "${w//\'/\'\\\'\'}"; } # one word, quoted for the CLI's split

# A worker's update failed (Swarm rolled it back): the web service and the workers this run updated
# go back to their previous spec too, then the run ends saying so.
swarm_workers_failed() { # swarm_workers_failed WHY
  local svc back=() failed="$SWARM_SVC"
  for svc in "${P[app]}" "${SWARM_UPDATED_WORKERS[@]}"; do
    [[ "$svc" != "$SWARM_SVC" ]] || continue
    if docker_call service rollback --quiet "$svc" >/dev/null 2>&1; then back+=("$svc"); fi
  done
  SWARM_SVC=''
  die "worker service $failed: $1. Rolled back to their previous version with it: ${back[*]:-nothing (the services were new)}. $(swarm_serving)"
}

# The pre-switch task on Swarm: a one-off job (a replicated-job service, no restart) of the new
# image on the service's network, with its env, before the service is updated; the run waits for
# its end (task_timeout), streams its log, and removes it. As on ssh, a failure or timeout changes
# nothing and a version whose task succeeded is not run again (task.sh).
swarm_task() {
  [[ -n "${P[task]}" ]] || return 0
  local words=() job when args=() i secret_env='' state err rc=0 deadline code out why start line
  mapfile -d '' words < <(printf '%s' "${P[task]}" | base64 -d)
  if [[ "${P[task_force]}" != 1 ]] && when="$(task_done)"; then
    log "pre-switch task: it succeeded for $RUN_VERSION on this swarm already ($when): not run again (pre-switch-force: true runs it anyway)"
    return 0
  fi
  job="${P[app]}-task-$(date +%s)"
  phase "pre-switch task"
  event task
  registry_login
  args=(--quiet --detach --mode replicated-job --restart-condition none --name "$job" --label "bg-deploy.app=${P[app]}"
    --label "bg-deploy.task=$RUN_VERSION" --with-registry-auth)
  if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
  while IFS= read -r -d '' line; do args+=("$line"); done < <(swarm_args task create)
  if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
  secret_env="$(swarm_env_file)"
  if [[ -n "$secret_env" ]]; then args+=(--env-file "$secret_env"); fi
  log "pre-switch task: running '${words[*]}' as the one-off Swarm job $job of $RUN_IMAGE (up to ${P[task_timeout]}s)"
  start="$(now_ms)"
  out="$(docker ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} service create "${args[@]}" -- "$RUN_IMAGE" "${words[@]}" 2>&1)" || rc=$?
  if [[ -n "$secret_env" ]]; then rm -f "$secret_env"; fi
  ((rc == 0)) || { task_record failed; history_add failed-task; die "the pre-switch task could not start as a Swarm job: $out. Nothing was changed: $(swarm_serving)"; }
  deadline=$((start + ${P[task_timeout]%.*} * 1000))
  while :; do
    IFS='|' read -r state err <<<"$(docker_call service ps "$job" --no-trunc --format '{{.CurrentState}}|{{.Error}}' 2>/dev/null | head -n 1)"
    case "$state" in Complete* | Failed* | Rejected* | Shutdown*) break ;; esac
    if (($(now_ms) >= deadline)); then state=timeout; break; fi
    sleep 0.5
  done
  : >"$STATE_DIR/task.log"
  docker_call service logs --raw "$job" 2>&1 | task_stream "$STATE_DIR/task.log" || true
  docker_call service rm "$job" >/dev/null 2>&1 || true
  if [[ "$state" != Complete* ]]; then
    task_record failed
    history_add failed-task
    if [[ "$state" == timeout ]]; then why="did not end within ${P[task_timeout]}s (pre-switch-timeout) and was stopped"
    else
      code="$(printf '%s' "$err" | sed -n 's/.*non-zero exit (\([0-9]*\)).*/\1/p')"
      why="failed${code:+ with exit code $code} (${state%% *}${err:+: $err})"
    fi
    die "the pre-switch task '${words[*]}' $why. Nothing was changed: $(swarm_serving) Its last lines:
$(tail -n 10 "$STATE_DIR/task.log")"
  fi
  task_record ok
  log "pre-switch task: done in $(($(now_ms) - start)) ms"
  event tasked
}

main_swarm() {
  local current
  TMP_PATHS+=("$STATE_DIR/.env.$$") # swarm_env_file's
  swarm_check
  if [[ "${P[action]}" == rollback ]]; then
    current="$(state_get version)"
    [[ -n "$current" ]] || die "nothing is deployed for ${P[app]} on this swarm, so there is nothing to roll back to"
    target_pick "$current"
    log "service ${P[app]}: $current serving; rolling back to $RUN_VERSION ($RUN_IMAGE)"
    spec_load
  fi
  if [[ "${P[action]}" == deploy ]]; then swarm_task; fi
  if [[ -z "${P[health_cmd]}" ]]; then
    warn "engine swarm without health-cmd: Swarm sends traffic to a new task as soon as its process runs, before the app is ready, and cannot roll back a version that never gets healthy. Give health-cmd, a probe of ${P[health_path]} with a tool the image has."
  fi
  swarm_deploy
  swarm_workers
  state_write '' "$RUN_VERSION" "$RUN_IMAGE"
  spec_save
  history_add ok
  event finished
  result_print true "" "" "$RUN_VERSION" "$RUN_IMAGE"
}
