# Role host or app, in a run over several servers: prepared, then what the runner says.

# A run over several servers, on one of them (role host or app), once the new color is healthy:
# report `prepared` and do what the runner says. host: `switch` (then `finish`, or `undo`); app (the
# load balancer switches): `finish`; both: `keep` (promote: false) or `abort`. When the runner goes
# away, a host undoes its switch; an app server leaves both colors running, since the load
# balancer may point at either, and the next run takes over.
fleet_prepared() { # fleet_prepared FROM_COLOR TO_COLOR
  local from="$1" to="$2" cmd next=finish
  if [[ "${P[role]}" == host && -n "${P[preview_file]}" ]]; then
    preview_ensure "$from" || fleet_abort "$to" "$UPSTREAM_ERROR"
  fi
  journal_write prepared "$to"
  command_await prepared "color=$to previous_color=$from version=$RUN_VERSION image=$RUN_IMAGE"
  if [[ "${P[role]}" == host ]]; then next=switch; fi
  # behind a load balancer that watches, the old color stays warm until its watch has passed
  # (and its canary's steps, before it switches)
  cmd="$(command_next $((${P[commit_timeout]%.*} + $(canary_seconds) + P[watch])))"
  case "$cmd" in
    "$next") ;;
    keep)
      journal_write kept "$to"
      history_add prepared "$to"
      log "$(container_name "$to") keeps running $RUN_VERSION for a later run to promote"
      result_print false "$to" "$from" "$RUN_VERSION" "$RUN_IMAGE"
      return 0
      ;;
    revert)
      [[ "${P[role]}" == app ]] || fleet_abort "$to" "the runner said revert"
      # the load balancer's watch switched back to the old color, which kept running here
      docker_call stop -t 10 "$(container_name "$to")" >/dev/null 2>&1 || true
      workers_undo "$to" "$from" stop
      journal_clear
      history_add rolled-back-after-watch "$to"
      die "the load balancer's watch switched back to $(container_name "${from:-none}"); $(container_name "$to") is stopped and kept for its logs"
      ;;
    eof)
      runner_gone prepared
      if [[ "${P[role]}" == app ]]; then history_add interrupted "$to"; exit 1; fi
      fleet_abort "$to" "the runner went away before the switch" ;;
    *) fleet_abort "$to" "the runner said $cmd: another server could not get ready" ;;
  esac
  if [[ "${P[role]}" == host ]]; then
    canary_run "$from" "$to"
    watch_narrow
    WATCH_SWITCHED="$(now_ms)"
    switch_to "$to"
    commit_or_undo "$from" "$to" ' here' "$(container_name "${from:-none}") serves as before"
  fi
  main_finish "$from" "$to"
}

fleet_abort() { # fleet_abort COLOR WHY: remove the prepared color, switch nothing
  container_remove "$1"
  workers_undo "$1" "$(color_other "$1")"
  journal_clear
  history_add aborted "$1"
  die "$2; $(container_name "$1") was removed and nothing was switched here"
}
