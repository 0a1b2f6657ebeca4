# Step: wait until the new color answers 2xx on the health path.

health_probe() { # health_probe PORT PATH TIMEOUT -> prints the status code or nothing
  # bash's own /dev/tcp, no program started: a probe costs about a millisecond, so it can run often.
  # The address is this server's own (loopback or its bind address), where a connect is answered
  # or refused at once; the answer is awaited up to TIMEOUT seconds.
  # Called as $(health_probe …), in a subshell of its own: a connection that Docker's port proxy
  # accepts and then closes (the app not listening yet) must fail this write, not kill the run
  local code=''
  trap '' PIPE
  { exec 3<>"/dev/tcp/$(bind_host)/$1"; } 2>/dev/null || return 0
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: bg-deploy\r\n\r\n' "$2" >&3 2>/dev/null || { exec 3>&-; return 0; }
  read -r -t "$3" _ code _ <&3 2>/dev/null || true
  exec 3>&-
  printf '%s' "$code"
}

health_wait() { # health_wait COLOR
  local color="$1" name port start deadline code state now checked=0 status restarts exit_code ip beat
  name="$(container_name "$color")"; port="$(color_port "$color")"
  phase "health $name"
  start="$(now_ms)"; deadline=$((start + ${P[health_timeout]%.*} * 1000)); beat="$start"
  if [[ -n "${P[health_cmd]}" ]]; then
    log "waiting for Docker's health check of $name ($(printf '%q' "${P[health_cmd]}")), then http://$(bind_host):$port${P[health_path]}, up to ${P[health_timeout]}s"
  else
    log "polling http://$(bind_host):$port${P[health_path]} every ${P[health_interval]}s (up to ${P[health_timeout]}s)"
  fi
  local docker_health=''
  while :; do
    # with a health command, Docker's verdict first (every probe's own time: one inspect each)
    if [[ -n "${P[health_cmd]}" && "$docker_health" != healthy ]]; then
      docker_health="$(docker_call inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$name" 2>/dev/null || true)"
      if [[ "$docker_health" == unhealthy ]]; then
        health_failed "$color" "$name: Docker's health check ($(printf '%q' "${P[health_cmd]}")) says unhealthy"
      fi
    fi
    code=''
    if [[ -z "${P[health_cmd]}" || "$docker_health" == healthy ]]; then code="$(health_probe "$port" "${P[health_path]}" 2)"; fi
    if [[ "$code" == 2?? ]]; then
      log "$name is healthy after $(( $(now_ms) - start )) ms (HTTP $code)"
      event healthy
      return 0
    fi
    if (( $(now_ms) >= deadline )); then
      health_failed "$color" "$name did not answer 2xx on ${P[health_path]} within ${P[health_timeout]}s (last: ${code:-no HTTP answer}${P[health_cmd]:+; the Docker health check: ${docker_health:-none yet}})"
    fi
    now="$(now_ms)"
    # a heartbeat every 5 s, so a long wait is never silent: how long, and the last answer
    if ((now - beat >= 5000)); then
      beat="$now"
      log "still waiting for $name: $(( (now - start) / 1000 ))s of ${P[health_timeout]}s, last: ${code:+HTTP }${code:-no HTTP answer}"
    fi
    # the container's own state, at most every second (a docker call costs more than a probe)
    if ((now - checked >= 1000)); then
      checked="$now"
      state="$(docker_call inspect -f "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}} $IPS_FORMAT" "$name" 2>/dev/null || echo 'gone 0 0')"
      read -r status restarts exit_code ip _ <<<"$state"
      if [[ "$status" != running || "$restarts" != 0 ]]; then
        health_failed "$color" "$name exited or restarted before it became healthy (state: $status $restarts, exit code $exit_code)"
      fi
      CIP[$color]="${ip:-}"
    fi
    sleep "${P[health_interval]}"
  done
}

health_failed() { # health_failed COLOR MESSAGE: show the logs, remove the new container, leave the rest
  local name; name="$(container_name "$1")"
  log "last log lines of $name:"
  docker_call logs --tail 30 "$name" >&2 2>&1 || true
  docker_call rm -f "$name" >/dev/null 2>&1 || true
  workers_undo "$1" "$(color_other "$1")"
  history_add failed-health "$1"
  die "$2. Nothing was switched: the previous version is still serving."
}
