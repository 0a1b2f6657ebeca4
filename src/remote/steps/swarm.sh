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

swarm_service() { printf '%s' "${P[app]}"; }

# A variable the docker CLI, the dynamic linker or bash read themselves (the same list as the
# action's check of env, src/config-app.ts): it cannot carry an app's value into the CLI.
swarm_env_name_ok() { # swarm_env_name_ok NAME
  local n="${1^^}"
  case "$n" in PATH | HOME | IFS | ENV | TMPDIR | SHELLOPTS | BASHOPTS | BASH_* | LD_* | DOCKER_* | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | ALL_PROXY) return 1 ;; esac
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

# Create or update the service to RUN_IMAGE as RUN_VERSION, and wait until Swarm converged.
swarm_deploy() {
  local svc cfg args=() line rc=0 out limit secret_env='' created=0
  svc="$(swarm_service)"
  registry_login
  cfg="$REGISTRY_CONFIG"
  while IFS= read -r line; do args+=("$line"); done < <(swarm_settings)
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
    out="$(docker_bin="$(command -v docker)"
      for i in "${!ENV_KEYS[@]}"; do export "${ENV_KEYS[$i]}=${ENV_VALUES[$i]%x}"; done
      timeout "$limit" "$docker_bin" ${cfg:+--config "$cfg"} service update --quiet --with-registry-auth --image "$RUN_IMAGE" \
      --container-label-add "bg-deploy.version=$RUN_VERSION" "${args[@]}" -- "$svc" 2>&1)" || rc=$?
  else
    log "creating service $svc from $RUN_IMAGE with ${P[replicas]} replica(s)"
    created=1
    if ((${#ENV_KEYS[@]} > 0)); then
      secret_env="$STATE_DIR/.env.$$"; TMP_PATHS+=("$secret_env"); : >"$secret_env"
      for i in "${!ENV_KEYS[@]}"; do printf '%s=%s\n' "${ENV_KEYS[$i]}" "${ENV_VALUES[$i]%x}" >>"$secret_env"; done
      args+=(--env-file "$secret_env")
    fi
    if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
    if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
    out="$(timeout "$limit" docker ${cfg:+--config "$cfg"} service create --quiet --with-registry-auth --name "$svc" \
      --replicas "${P[replicas]}" --label "bg-deploy.app=${P[app]}" --container-label "bg-deploy.version=$RUN_VERSION" \
      "${args[@]}" -- "$RUN_IMAGE" 2>&1)" || rc=$?
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

main_swarm() {
  local current
  swarm_check
  if [[ "${P[action]}" == rollback ]]; then
    current="$(state_get version)"
    [[ -n "$current" ]] || die "nothing is deployed for ${P[app]} on this swarm, so there is nothing to roll back to"
    target_pick "$current"
    log "service ${P[app]}: $current serving; rolling back to $RUN_VERSION ($RUN_IMAGE)"
    spec_load
  fi
  if [[ -z "${P[health_cmd]}" ]]; then
    warn "engine swarm without health-cmd: Swarm sends traffic to a new task as soon as its process runs, before the app is ready, and cannot roll back a version that never gets healthy. Give health-cmd, a probe of ${P[health_path]} with a tool the image has."
  fi
  swarm_deploy
  state_write '' "$RUN_VERSION" "$RUN_IMAGE"
  spec_save
  history_add ok
  event finished
  result_print true "" "" "$RUN_VERSION" "$RUN_IMAGE"
}
