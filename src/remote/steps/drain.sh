# Step: wait until the old color serves nothing. Globals: USE_SS.

# Established TCP connections to the app port in the network namespace of a container's process
# (0 for none): nginx (directly or through docker-proxy) holds one per request in flight. With root,
# the kernel filters them (nsenter + ss); otherwise /proc/PID/net/tcp* is read, which is slow when
# the namespace holds thousands of TIME_WAIT sockets, as it does under load.
USE_SS=''

DRAIN_OPEN=0 # connections still open on the old color when the drain gave up (drain-timeout)

drain_connections() { # drain_connections PID
  local pid="$1"
  [[ "$pid" != 0 ]] || { echo 0; return; }
  if [[ -z "$USE_SS" ]]; then
    if command -v ss >/dev/null && nsenter -t "$pid" -n true 2>/dev/null; then USE_SS=1; else USE_SS=0; fi
  fi
  if [[ "$USE_SS" == 1 ]]; then
    nsenter -t "$pid" -n ss -Htn state established "( sport = :${P[container_port]} )" 2>/dev/null | wc -l
    return
  fi
  [[ -r "/proc/$pid/net/tcp" ]] || { echo 0; return; }
  awk -v port=":$(printf '%04X' "${P[container_port]}")" \
    '$4 == "01" && substr($2, length($2) - 4) == port { n++ } END { print n + 0 }' \
    "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" 2>/dev/null || echo 0
}

# Wait until the old color serves nothing. `nginx -s reload` returns before nginx has started new
# workers, and an old worker that the CPU has not run yet can still pass a request it already read
# to the old color. So, after a reload, the drain waits for nginx's replaced workers to exit (they
# do once their last request is answered) and for the old color to have no established connection
# for 0.2 s. Without a reload (dnat mode) a connection opened after the rule changed goes to the
# new color, so the 0.2 s without connections after traffic reached the new color is enough. When
# nginx's processes cannot be seen, 1 s without connections stands in for the workers' exit.
# BEFORE: the nginx workers before the switch's reload (empty without a reload).
drain_color() { # drain_color OLD_COLOR NEW_COLOR BEFORE
  local before="$3" name start deadline now o n=0 seen_new=0 zero_since=0 old_pid new_pid workers='' quiet=200 p alive
  name="$(container_name "$1")"
  container_running "$1" || { log "$name is not running; nothing to drain"; event drained; return 0; }
  phase "drain $name"
  start="$(now_ms)"
  deadline=$(( start + ${P[drain_timeout]%.*} * 1000 ))
  old_pid="$(container_pid "$1")"; new_pid="$(container_pid "$2")"
  local watch=0
  if [[ -n "$before" ]]; then watch=1; elif [[ "$SWITCH_MODE" != dnat || "$PREV_MODE" != dnat ]]; then quiet=1000; fi
  while :; do
    o="$(drain_connections "$old_pid")"
    if ((!seen_new)); then n="$(drain_connections "$new_pid")"; fi
    now="$(now_ms)"
    if ((n > 0 || now - start >= 1000)); then seen_new=1; fi
    if ((o > 0)); then zero_since=0; elif ((zero_since == 0)); then zero_since="$now"; fi
    alive=0
    if ((watch == 1)); then
      if [[ -z "$workers" ]]; then workers="$(nginx_replaced_workers "$before")"; fi
      if [[ -z "$workers" ]]; then
        alive=1
        # no replaced worker found: nginx is not visible this way; fall back to a longer quiet time
        if ((now - start >= 2000)); then watch=0; quiet=1000; log "could not see nginx's replaced workers; draining by connections only"; fi
      else
        for p in $workers; do if [[ -e "/proc/$p" ]]; then alive=1; break; fi; done
      fi
    fi
    if ((seen_new && !alive && zero_since > 0 && now - zero_since >= quiet)); then break; fi
    if ((now >= deadline)); then
      log "drain timeout: $o connection(s) still open on $name${workers:+, nginx workers $workers}"
      DRAIN_OPEN="$o"
      break
    fi
    sleep 0.05
  done
  log "drained $name in $(( now - start )) ms"
  event drained
}
