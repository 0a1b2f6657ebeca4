# Step: start the idle color: a new container of RUN_IMAGE, or (a rollback's fast path) the kept
# container of RUN_VERSION. Globals: APP_ARGS, APP_SPANNING, APP_ENV_FILE (app_run_args).

APP_ARGS=()
APP_SPANNING=()
APP_ENV_FILE=''

# The `docker run` arguments every container of the app's version gets (a color, the pre-switch
# task): network, env file, the env and the run arguments, into APP_ARGS. Env values: one line
# each in an owner-only file in the owner-only state directory (APP_ENV_FILE), removed as soon as
# docker has read it (app_run_args_done); a value that spans lines (a PEM key) cannot be written
# there, so docker reads it from its own environment (`-e KEY`; app_env_export, in the subshell of
# that one command): APP_SPANNING holds their indices.
app_run_args() {
  local i
  APP_ARGS=(); APP_SPANNING=(); APP_ENV_FILE=''
  if [[ -n "${P[network]}" ]]; then APP_ARGS+=(--network "${P[network]}"); fi
  if [[ -n "${P[env_file]}" ]]; then APP_ARGS+=(--env-file "${P[env_file]}"); fi
  if ((${#ENV_KEYS[@]} > 0)); then
    APP_ENV_FILE="$STATE_DIR/.env.$$"
    TMP_PATHS+=("$APP_ENV_FILE")
    : >"$APP_ENV_FILE"
    for i in "${!ENV_KEYS[@]}"; do
      if [[ "${ENV_VALUES[$i]}" == *[$'\n\r']* ]]; then APP_SPANNING+=("$i"); APP_ARGS+=(-e "${ENV_KEYS[$i]}")
      else printf '%s=%s\n' "${ENV_KEYS[$i]}" "${ENV_VALUES[$i]%x}" >>"$APP_ENV_FILE"
      fi
    done
    APP_ARGS+=(--env-file "$APP_ENV_FILE")
  fi
  APP_ARGS+=("${RUN_ARGS[@]}")
}

app_env_export() { local i; for i in "${APP_SPANNING[@]}"; do export "${ENV_KEYS[$i]}=${ENV_VALUES[$i]%x}"; done; }

app_run_args_done() { if [[ -n "$APP_ENV_FILE" ]]; then rm -f "$APP_ENV_FILE"; fi; }

start_color() { # start_color COLOR
  local color="$1" name port
  name="$(container_name "$color")"; port="$(color_port "$color")"
  phase "start $name"
  if [[ "$IDLE_EXISTS" == yes ]] || { [[ -z "$IDLE_EXISTS" ]] && container_exists "$color"; }; then
    if container_running "$color"; then
      # a previous run died after its switch, before draining this color: nginx's old workers may
      # still be answering requests through it
      log "$name is still running (a previous run stopped before draining it); draining it first"
      drain_color "$color" "$(color_other "$color")" ''
      phase "start $name"
    fi
    log "replacing leftover container $name"
    docker_call rm -f "$name" >/dev/null
  fi
  app_run_args
  local args=(run -d --name "$name" --init --restart unless-stopped
    --label "bg-deploy.app=${P[app]}" --label "bg-deploy.color=$color" --label "bg-deploy.version=$RUN_VERSION"
    -p "${P[bind_address]}:$port:${P[container_port]}")
  # a health command (health-cmd, or compose-file's healthcheck): Docker runs it, and health_wait
  # waits for its verdict; compose-file's interval and the rest come in the run arguments
  if [[ -n "${P[health_cmd]}" ]]; then
    args+=(--health-cmd "${P[health_cmd]}")
    if [[ " ${RUN_ARGS[*]} " != *" --health-interval "* ]]; then args+=(--health-interval 1s); fi
  fi
  args+=("${APP_ARGS[@]}" -- "$RUN_IMAGE")
  # the web's own command (compose-file's), else the image's CMD
  if [[ -n "${P[command]}" ]]; then
    local words=()
    mapfile -d '' words < <(printf '%s' "${P[command]}" | base64 -d)
    args+=("${words[@]}")
  fi
  log "starting $name ($RUN_IMAGE) on ${P[bind_address]}:$port"
  local out rc=0
  out="$(app_env_export; docker_call "${args[@]}" 2>&1)" || rc=$?
  app_run_args_done
  ((rc == 0)) || { docker_call rm -f "$name" >/dev/null 2>&1 || true; die "docker run $name failed: $out"; }
  event started
}

# A rollback's fast path: the idle color's container was kept (stopped) after the deploy it served
# in, with RUN_VERSION and RUN_IMAGE: start it again. False when there is no such container.
start_kept() { # start_kept COLOR
  local name kept running version image ip
  name="$(container_name "$1")"
  # one docker call for all it needs to know (the fewer on this path, the sooner it serves), the
  # address nginx's backup line names too (upstream_backup, lib/nginx.sh)
  kept="$(docker_call inspect -f "{{.State.Running}} {{index .Config.Labels \"bg-deploy.version\"}} {{.Config.Image}} $IPS_FORMAT" "$name" 2>/dev/null)" || return 1
  read -r running version image ip _ <<<"$kept"
  [[ "$version" == "$RUN_VERSION" && "$image" == "$RUN_IMAGE" ]] || return 1
  phase "start $name (kept from $RUN_VERSION)"
  if [[ "$running" == true ]]; then
    CIP[$1]="${ip:-}"
    log "fast path: $name is running still (kept warm): a switch only"
  else
    log "fast path: starting the kept container $name"
    docker_call start "$name" >/dev/null || die "docker start $name failed"
  fi
  event started
}
