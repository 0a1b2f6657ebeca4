# The two runs as their lists of steps: deploy and rollback, sharing what follows the start; the
# roles of a run over several servers are in roles/ (fleet.sh: host and app; lb.sh: the load
# balancer). Globals: TMP_PATHS (files to remove at exit).

TMP_PATHS=()

# shellcheck disable=SC2317 # called by the EXIT trap
main_cleanup() { local p; for p in "${TMP_PATHS[@]}"; do rm -rf "$p"; done; }

main_deploy() {
  local active idle
  if [[ "${P[role]}" == app ]]; then
    # behind a load-balancer host, which says which color to start: the other one serves. Started
    # while the image builds, the color comes with the runner's word that it is pushed.
    if [[ -z "${P[color]}" ]]; then await_color; fi
    idle="${P[color]}"; active="$(color_other "$idle")"
    container_running "$active" || active=''
  else
    upstream_recover
    active="$(detect_active)"
    if [[ -n "$active" ]]; then idle="$(color_other "$active")"; else idle=blue; fi
  fi
  log "app ${P[app]}: ${active:-nothing} serving now; deploying ${RUN_VERSION:-$RUN_IMAGE} to $idle"
  if [[ "${P[role]}" =~ ^(single|host)$ && -n "$active" ]]; then watch_check; watch_open "$active"; fi
  # the runner still builds (one server, or each server of a run over several): wait for it
  if ((${P[build_wait]%.*} > 0)) && [[ "${P[role]}" != app ]]; then await_image "$active" "$idle"; fi
  if [[ "${P[role]}" != single ]] && journal_kept "$idle"; then
    log "$(container_name "$idle") runs $RUN_VERSION already, prepared by $(journal_get run): promoting it"
    event started
  else
    pull_image
    accessories_ensure
    task_run "${active:+$(container_name "$active") serves as before}"
    if [[ "${P[role]}" =~ ^(single|host)$ ]]; then watch_open "$active"; fi
    start_color "$idle"
    workers_start "$idle" regular
  fi
  main_go "$active" "$idle"
}

# action task, in a run over several servers: the pre-switch task alone, on the server the runner
# picked, before any server starts a color.
main_task() {
  log "app ${P[app]}: the pre-switch task of ${RUN_VERSION:-$RUN_IMAGE}, before any server starts it"
  pull_image
  task_run "no server was changed"
  result_print false '' '' "$RUN_VERSION" "$RUN_IMAGE"
}

main_rollback() {
  local active idle current
  if [[ "${P[role]}" == app ]]; then
    # the load-balancer host picked the version and its image
    idle="${P[color]}"; active="$(color_other "$idle")"
    container_running "$active" || active=''
    current="$(state_get version)"
  else
    upstream_recover
    active="$(detect_active)"
    [[ -n "$active" ]] || die "nothing is deployed for ${P[app]} on this server, so there is nothing to roll back to"
    current="$(state_get version)"
    target_pick "$current"
    idle="$(color_other "$active")"
  fi
  log "app ${P[app]}: ${current:-unknown} serving from ${active:-none}; rolling back to $RUN_VERSION"
  if [[ "${P[role]}" =~ ^(single|host)$ ]]; then watch_check; watch_open "$active"; fi
  spec_load
  accessories_ensure
  local slow=''
  if spec_changes_container; then
    slow="slow path: this run sets ${SPEC_OVERRIDES//,/, } itself, so a new container of $RUN_VERSION starts, not the kept one"
  elif ! start_kept "$idle"; then
    slow="slow path: no kept container for $RUN_VERSION; running $RUN_IMAGE"
  fi
  if [[ -n "$slow" ]]; then
    log "$slow"
    if ! docker_call image inspect "$RUN_IMAGE" >/dev/null 2>&1; then
      pull_image "cannot roll back to $RUN_VERSION: its image $RUN_IMAGE is neither on the server nor in the registry. Versions deployed here: ${TARGET_AVAILABLE:-none}"
    fi
    start_color "$idle"
  fi
  workers_start "$idle" regular
  main_go "$active" "$idle"
}

# One server switching itself goes on at once; in a run over several, the runner decides.
main_go() { # main_go FROM_COLOR TO_COLOR
  health_wait "$2"
  workers_settle "$2" regular
  workers_swap_single "$1" "$2"
  if [[ "${P[role]}" == single ]]; then
    canary_run "$1" "$2"
    watch_narrow
    WATCH_SWITCHED="$(now_ms)"
    switch_to "$2"
    main_finish "$1" "$2"
  else
    fleet_prepared "$1" "$2"
  fi
}

# After the switch: state, drain, history, and the old color stopped in the background. FROM is
# empty on the first deploy of the app.
main_finish() { # main_finish FROM_COLOR TO_COLOR
  local from="$1" to="$2" wait=0 prev_version prev_image
  prev_version="$(state_get version)"; prev_image="$(state_get image)"
  state_write "$to" "$RUN_VERSION" "$RUN_IMAGE"
  journal_clear
  if ((WATCH_FROM > 0)) && ! watch_window "$to"; then
    watch_revert "$from" "$to" "$prev_version" "$prev_image"
    workers_undo "$to" "$from" stop
    die "the watch window switched back from $RUN_VERSION: $WATCH_REASON; $WATCH_FIGURES. $(container_name "$from") (${prev_version:-the previous version}) serves again; $(container_name "$to") is stopped and kept for its logs (docker logs $(container_name "$to"))."
  fi
  workers_stop_later "$from"
  if [[ -n "$from" ]]; then
    nat_forget "$from" || true
    drain_color "$from" "$to" "$NGINX_BEFORE"
    nat_forget "$from" || wait="$(nat_stop_delay "$from")"
  fi
  switch_settle
  spec_save
  history_add ok "$to"
  event finished
  stop_later "$from" "$wait"
  result_print true "$to" "$from" "$RUN_VERSION" "$RUN_IMAGE" "$DRAIN_OPEN" \
    "$(if ((WATCH_FROM > 0)); then echo "$WATCH_TOTAL,$WATCH_BAD,$WATCH_BASE_TOTAL,$WATCH_BASE_BAD"; fi)"
}

main() {
  params_parse "$@"
  params_read_secrets
  RUN_VERSION="${P[version]}"; RUN_IMAGE="${P[image]}"
  trap main_cleanup EXIT
  # in a run over several servers, a cut session must not end the script half-way: it notices
  # when it reads the runner's next command, and undoes or leaves things as its role says
  if [[ "${P[role]}" != single ]]; then trap '' PIPE; fi
  if [[ "${P[action]}" == status ]]; then status_print; return 0; fi
  if [[ "${P[action]}" == check ]]; then check_run; return 0; fi
  if [[ "${P[role]}" != lb ]]; then
    command -v docker >/dev/null || die "docker is not installed on the server (or not on PATH for this user)"
  fi
  command -v flock >/dev/null || die "flock is not installed on the server (package util-linux)"
  state_init
  event begin
  lock_acquire
  PREVIOUS_VERSION="$(state_get version)"
  switch_mode_decide
  if [[ "$SWITCH_MODE" == dnat || "$PREV_MODE" == dnat ]]; then nat_preflight; fi
  journal_report
  trap 'history_print; serving_print; main_cleanup' EXIT
  if [[ "${P[role]}" == lb ]]; then lb_run; return; fi
  docker_preflight
  if [[ "${P[engine]}" == swarm ]]; then main_swarm; return; fi
  case "${P[action]}" in
    deploy) main_deploy ;;
    rollback) main_rollback ;;
    task) main_task ;;
    *) die "unknown action '${P[action]}'" ;;
  esac
}

main "$@"; exit "$?"
