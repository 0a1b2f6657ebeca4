# Role lb, in a run over several servers: the load balancer switches every app server at once.

# The load-balancer host (role lb): it runs no container. It says which color serves (and, for a
# rollback, the version to go back to); the runner prepares the app servers, then has it switch
# its upstream to that color on every app server at once (`switch COLOR`, then `finish` or
# `undo`), or `keep` (promote: false) or `abort`.
lb_run() {
  local active current idle cmd
  upstream_recover
  active="$(state_get color)"; current="$(state_get version)"
  if [[ "${P[action]}" == rollback ]]; then
    [[ -n "$active" ]] || die "nothing is deployed for ${P[app]} behind this load balancer, so there is nothing to roll back to"
    target_pick "$current"
  fi
  if [[ -n "$active" ]]; then idle="$(color_other "$active")"; else idle=blue; fi
  # the watch: this nginx's log covers every app server; open before they start the new color
  if [[ -n "$active" ]]; then watch_check; watch_open "$active"; fi
  if [[ -n "${P[preview_file]}" ]]; then preview_ensure "$active" || die "$UPSTREAM_ERROR"; fi
  command_await ready "color=$idle previous_color=$active version=$RUN_VERSION image=$RUN_IMAGE"
  # a run that overlaps the build (build_wait > 0) gets here while the image still builds
  cmd="$(command_next $((${P[commit_timeout]%.*} + ${P[build_wait]%.*})))"
  case "$cmd" in
    "switch $idle") ;;
    keep)
      history_add prepared "$idle"
      result_print false "$idle" "$active" "$RUN_VERSION" "$RUN_IMAGE"
      return 0 ;;
    eof) runner_gone ready; exit 1 ;;
    *) die "nothing was switched (the runner said $cmd)" ;;
  esac
  canary_run "$active" "$idle"
  phase "switch to ${P[app]}-$idle on every app server"
  watch_narrow
  WATCH_SWITCHED="$(now_ms)"
  # the load balancer runs no container: a failed switch removes nothing
  switch_point "$idle" || {
    if [[ -n "$UPSTREAM_FAILED" ]]; then history_add "$UPSTREAM_FAILED" "$idle"; fi
    die "$SWITCH_ERROR"
  }
  log "nginx now sends ${P[upstream_name]} to $(upstream_target "$idle")"
  event switched
  commit_or_undo "$active" "$idle" '' "nginx sends ${P[upstream_name]} to ${active:-nothing} as before"
  if [[ "${P[watch]}" != 0 ]]; then
    if ((WATCH_FROM > 0)) && ! watch_window "$idle"; then lb_watch_revert "$active" "$idle"; fi
    # the runner tells the app servers to finish (stop the old colors) only now
    command_await watched
  fi
  state_write "$idle" "$RUN_VERSION" "$RUN_IMAGE"
  journal_clear
  history_add ok "$idle"
  event finished
  result_print true "$idle" "$active" "$RUN_VERSION" "$RUN_IMAGE" 0 \
    "$(if ((WATCH_FROM > 0)) && [[ "${P[watch]}" != 0 ]]; then echo "$WATCH_TOTAL,$WATCH_BAD,$WATCH_BASE_TOTAL,$WATCH_BASE_BAD"; fi)"
}

# After a breach of the watch: every app server back to its old color in one write (they kept it
# running); the runner then has them stop the new one.
lb_watch_revert() { # lb_watch_revert FROM TO
  local from="$1" to="$2"
  phase "switch back to ${P[app]}-$from on every app server"
  switch_point "$from" \
    || die "the watch found $RUN_VERSION bad ($WATCH_REASON), but could not switch back: $SWITCH_ERROR. ${P[app]}-$from still runs on every app server: run the workflow with rollback: previous."
  rm -f "$STATE_DIR/upstream.bak" "$STATE_DIR/upstream.none"
  log "switched back: nginx sends ${P[upstream_name]} to $(upstream_target "$from") again"
  event reverted
  history_add rolled-back-after-watch "$to"
  die "the watch window switched back from $RUN_VERSION: $WATCH_REASON; $WATCH_FIGURES. ${P[app]}-$from ($(state_get version)) serves again on every app server"
}
