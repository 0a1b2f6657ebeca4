# Step (a run over several servers): put back what served before this run's switch, when another
# server could not switch or the runner went away before it said `finish`.

switch_undo() { # switch_undo FROM TO
  local from="$1" to="$2"
  phase "undo the switch to $(container_name "$to")"
  NGINX_BEFORE=''
  if [[ "$SWITCH_MODE" == dnat ]]; then
    if [[ -n "$from" ]]; then
      nat_apply "$(nat_chain)" "${P[live_port]}" "$(color_port "$from")" >&2 || log "warning: could not put the NAT rule back to $(container_name "$from")"
    else
      nat_remove
    fi
  fi
  if ((UPSTREAM_WROTE)); then
    upstream_restore
    if nginx_run "${P[nginx_test]}" >/dev/null 2>&1; then
      NGINX_BEFORE="$(nginx_workers)"
      nginx_run "${P[nginx_reload]}" >&2 || log "warning: nginx reload failed while undoing the switch"
    else
      log "warning: nginx rejects the restored upstream file ${P[upstream_file]}; not reloaded"
    fi
  fi
  log "${from:+$(container_name "$from") serves again; }removing $(container_name "$to")"
  if [[ "${P[role]}" != lb ]]; then
    drain_color "$to" "$from" "$NGINX_BEFORE"
    container_remove "$to"
    workers_undo "$to" "$from"
  fi
  journal_clear
  history_add undone "$to"
}

# A server that switched (role host, or the load balancer): report it, then wait for the runner's
# `finish`. Anything else, or the runner gone, undoes the switch here and ends the run saying
# what serves (AFTER).
commit_or_undo() { # commit_or_undo FROM TO WHERE AFTER
  local cmd
  journal_write switched "$2"
  command_await switched "color=$2"
  cmd="$(command_next)"
  [[ "$cmd" != finish ]] || return 0
  if [[ "$cmd" == eof ]]; then runner_gone switched; fi
  switch_undo "$1" "$2"
  die "the switch to $RUN_VERSION was undone$3 (${cmd/#eof/the runner went away}): $4"
}
