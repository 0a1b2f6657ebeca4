# Step: start the idle color: a new container of RUN_IMAGE, or (a rollback's fast path) the kept
# container of RUN_VERSION.

start_color() { # start_color COLOR
  local color="$1" name port key
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
  local args=(run -d --name "$name" --init --restart unless-stopped
    --label "bg-deploy.app=${P[app]}" --label "bg-deploy.color=$color" --label "bg-deploy.version=$RUN_VERSION"
    -p "${P[bind_address]}:$port:${P[container_port]}")
  if [[ -n "${P[network]}" ]]; then args+=(--network "${P[network]}"); fi
  if [[ -n "${P[env_file]}" ]]; then args+=(--env-file "${P[env_file]}"); fi
  # env values: one line each in an owner-only file in the owner-only state directory, removed as
  # soon as docker has read it; a value that spans lines (a PEM key) cannot be written there, so
  # docker reads it from its own environment (`-e KEY`), set for that one command only
  local spanning=() i
  if ((${#ENV_KEYS[@]} > 0)); then
    local secret_env="$STATE_DIR/.env.$$"
    TMP_PATHS+=("$secret_env")
    : >"$secret_env"
    for i in "${!ENV_KEYS[@]}"; do
      if [[ "${ENV_VALUES[$i]}" == *[$'\n\r']* ]]; then spanning+=("$i"); args+=(-e "${ENV_KEYS[$i]}")
      else printf '%s=%s\n' "${ENV_KEYS[$i]}" "${ENV_VALUES[$i]%x}" >>"$secret_env"
      fi
    done
    args+=(--env-file "$secret_env")
  fi
  args+=("${RUN_ARGS[@]}" -- "$RUN_IMAGE")
  log "starting $name ($RUN_IMAGE) on ${P[bind_address]}:$port"
  local out rc=0
  out="$(for i in "${spanning[@]}"; do export "${ENV_KEYS[$i]}=${ENV_VALUES[$i]%x}"; done
    docker_call "${args[@]}" 2>&1)" || rc=$?
  if [[ -n "${secret_env:-}" ]]; then rm -f "$secret_env"; fi
  ((rc == 0)) || { docker_call rm -f "$name" >/dev/null 2>&1 || true; die "docker run $name failed: $out"; }
  event started
}

# A rollback's fast path: the idle color's container was kept (stopped) after the deploy it served
# in, with RUN_VERSION and RUN_IMAGE: start it again. False when there is no such container.
start_kept() { # start_kept COLOR
  local name kept running version image
  name="$(container_name "$1")"
  # one docker call for all it needs to know (the fewer on this path, the sooner it serves)
  kept="$(docker_call inspect -f '{{.State.Running}} {{index .Config.Labels "bg-deploy.version"}} {{.Config.Image}}' "$name" 2>/dev/null)" || return 1
  read -r running version image <<<"$kept"
  [[ "$version" == "$RUN_VERSION" && "$image" == "$RUN_IMAGE" ]] || return 1
  phase "start $name (kept from $RUN_VERSION)"
  if [[ "$running" == true ]]; then
    log "fast path: $name is running still (kept warm): a switch only"
  else
    log "fast path: starting the kept container $name"
    docker_call start "$name" >/dev/null || die "docker start $name failed"
  fi
  event started
}
