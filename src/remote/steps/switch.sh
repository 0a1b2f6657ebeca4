# Step: send traffic to the new color (reload mode: the upstream; dnat mode: the NAT rule), and
# settle the mode afterwards. Globals: SWITCH_MODE (this run's mode, decided once by
# switch_mode_decide), PREV_MODE (the mode of the deploy before this one).

SWITCH_MODE=reload
PREV_MODE=reload
SWITCH_ERROR=''  # why switch_point did not take
SWITCH_BACKUP='' # reload mode: the color's docker address switch_point gave nginx as a backup

# The run's switch mode, decided once before anything changes: the mode given, except that a
# rollback switches in the mode of the deploy it undoes.
switch_mode_decide() {
  PREV_MODE="$(state_get switch_mode)"; PREV_MODE="${PREV_MODE:-reload}"
  SWITCH_MODE="${P[switch_mode]}"
  if [[ "${P[action]}" == rollback && "$PREV_MODE" != "$SWITCH_MODE" ]]; then
    log "rolling back in switch-mode $PREV_MODE, the mode of the deploy it undoes (switch-mode ${P[switch_mode]} was given)"
    SWITCH_MODE="$PREV_MODE"
  fi
}

# The switch: point the app's traffic at COLOR in this run's mode. dnat: one atomic replacement
# of the NAT rule, to the color's port; reload: the upstream file names the color (and its docker
# address as a backup), nginx tests and reloads it. Every place that points traffic calls it: the
# deploy's switch, the watch's switch back, the load balancer. False, with SWITCH_ERROR (and for
# the upstream file UPSTREAM_FAILED, the history's word) when it did not take: then nothing
# changed. An undo in a run over several servers is not a switch: it puts back the upstream file
# that was there before, byte for byte (steps/undo.sh).
switch_point() { # switch_point COLOR
  SWITCH_ERROR=''
  if [[ "$SWITCH_MODE" == dnat ]]; then
    nat_apply "$(nat_chain)" "${P[live_port]}" "$(color_port "$1")" >&2 && return 0
    SWITCH_ERROR='iptables-restore failed'
    return 1
  fi
  SWITCH_BACKUP="$(upstream_backup "$1")"
  upstream_write "$(upstream_target "$1")" "$1" "$SWITCH_BACKUP" && return 0
  SWITCH_ERROR="$UPSTREAM_ERROR"
  return 1
}

# The deploy's switch to its new color; when it does not take, that color is removed and the run
# ends: the previous version serves.
switch_to() { # switch_to COLOR
  phase "switch to $(container_name "$1")"
  if [[ "$SWITCH_MODE" == dnat ]]; then switch_dnat "$1"; event switched; else switch_reload "$1"; fi
}

# reload mode: the upstream names the color's port; nginx is reloaded.
switch_reload() { # switch_reload COLOR
  if ! switch_point "$1"; then
    container_remove "$1"
    if [[ -n "$UPSTREAM_FAILED" ]]; then history_add "$UPSTREAM_FAILED" "$1"; fi
    die "$SWITCH_ERROR"
  fi
  # stamped as soon as the reload returned: nginx's new workers may answer from then on
  event switched
  log "nginx now sends ${P[upstream_name]} to $(upstream_target "$1")${SWITCH_BACKUP:+ (or $SWITCH_BACKUP while that port refuses)}"
}

# dnat mode: one atomic rule replacement sends the live port to the color. nginx's upstream names
# the live port; it is written, tested and reloaded only when it does not yet (the first time).
switch_dnat() { # switch_dnat COLOR
  local live="127.0.0.1:${P[live_port]}" port had_rule=0
  port="$(color_port "$1")"
  # the rule sends traffic to the published port on 127.0.0.1, which only Docker's userland proxy
  # serves: with "userland-proxy": false, Docker's own NAT rule never sees it (dockerd still holds
  # the port, so connections would hang)
  if ! nat_proxied "$port"; then
    container_remove "$1"
    die "switch-mode dnat needs Docker's userland proxy on the server: no docker-proxy serves 127.0.0.1:$port, the published port of $(container_name "$1"), so the Docker daemon runs with \"userland-proxy\": false. Use switch-mode reload, which works with that setting, or turn the proxy back on. Nothing was switched; the previous version is still serving."
  fi
  if [[ -n "$(nat_port)" ]]; then had_rule=1; fi
  if ! switch_point "$1"; then
    container_remove "$1"
    die "could not install the NAT rule 127.0.0.1:${P[live_port]} -> 127.0.0.1:$port (iptables-restore failed, see above); nothing was switched"
  fi
  log "NAT rule: 127.0.0.1:${P[live_port]} -> 127.0.0.1:$port ($(container_name "$1")), chain $(nat_chain)"
  if ! upstream_points_to "$live"; then
    log "first switch in dnat mode: pointing the nginx upstream at $live (one nginx reload)"
    if ((had_rule)); then upstream_switch "$live" "$1"; else upstream_switch "$live" "$1" nat_remove; fi
  fi
}

# After the switch and the drain: in dnat mode, make sure the rule comes back after a reboot; when
# the app just left dnat mode, remove its rule (connections through it have drained).
switch_settle() {
  if [[ "$SWITCH_MODE" == dnat ]]; then
    nat_install_restore
  elif [[ "$PREV_MODE" == dnat ]]; then
    nat_remove
    log "left switch-mode dnat: removed the NAT rule (chain $(nat_chain))"
  fi
}
