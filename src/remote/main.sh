# The two runs as their lists of steps: deploy and rollback, sharing what follows the start.
# Globals: TMP_PATHS (files to remove at exit).

TMP_PATHS=()

# shellcheck disable=SC2317 # called by the EXIT trap
main_cleanup() { local p; for p in "${TMP_PATHS[@]}"; do rm -rf "$p"; done; }

main_deploy() {
  local active idle
  upstream_recover
  active="$(detect_active)"
  if [[ -n "$active" ]]; then idle="$(color_other "$active")"; else idle=blue; fi
  log "app ${P[app]}: ${active:-nothing} serving now; deploying ${RUN_VERSION:-$RUN_IMAGE} to $idle"
  pull_image
  start_color "$idle"
  main_switch "$active" "$idle"
}

main_rollback() {
  local active idle current
  upstream_recover
  active="$(detect_active)"
  [[ -n "$active" ]] || die "nothing is deployed for ${P[app]} on this server, so there is nothing to roll back to"
  current="$(state_get version)"
  target_pick "$current"
  idle="$(color_other "$active")"
  log "app ${P[app]}: ${current:-unknown} serving from $active; rolling back to $RUN_VERSION"
  if ! start_kept "$idle"; then
    log "slow path: no kept container for $RUN_VERSION; running $RUN_IMAGE"
    if ! docker_call image inspect "$RUN_IMAGE" >/dev/null 2>&1; then
      pull_image "cannot roll back to $RUN_VERSION: its image $RUN_IMAGE is neither on the server nor in the registry. Versions deployed here: ${TARGET_AVAILABLE:-none}"
    fi
    start_color "$idle"
  fi
  main_switch "$active" "$idle"
}

# From the started container to the result: health, switch, state, drain, history, stop the old
# color in the background. FROM is empty on the first deploy of the app.
main_switch() { # main_switch FROM_COLOR TO_COLOR
  local from="$1" to="$2" wait=0
  health_wait "$to"
  switch_to "$to"
  state_write "$to" "$RUN_VERSION" "$RUN_IMAGE"
  if [[ -n "$from" ]]; then
    nat_forget "$from" || true
    drain_color "$from" "$to" "$NGINX_BEFORE"
    nat_forget "$from" || wait="$(nat_stop_delay "$from")"
  fi
  switch_settle
  history_add ok "$to"
  event finished
  stop_later "$from" "$wait"
  marker result "deployed=true color=$to previous_color=$from version=$RUN_VERSION image=$RUN_IMAGE"
}

main() {
  params_parse "$@"
  params_read_secrets
  RUN_VERSION="${P[version]}"; RUN_IMAGE="${P[image]}"
  trap main_cleanup EXIT
  command -v docker >/dev/null || die "docker is not installed on the server (or not on PATH for this user)"
  command -v flock >/dev/null || die "flock is not installed on the server (package util-linux)"
  state_init
  event begin
  lock_acquire
  PREV_MODE="$(state_get switch_mode)"; PREV_MODE="${PREV_MODE:-reload}"
  if [[ "${P[action]}" == rollback && "$PREV_MODE" != "${P[switch_mode]}" ]]; then
    log "rolling back in switch-mode $PREV_MODE, the mode of the deploy it undoes (switch-mode ${P[switch_mode]} was given)"
    P[switch_mode]="$PREV_MODE"
  fi
  if [[ "${P[switch_mode]}" == dnat || "$PREV_MODE" == dnat ]]; then nat_preflight; fi
  docker_preflight
  trap 'history_print; main_cleanup' EXIT
  case "${P[action]}" in
    deploy) main_deploy ;;
    rollback) main_rollback ;;
    *) die "unknown action '${P[action]}'" ;;
  esac
}

main "$@"; exit "$?"
