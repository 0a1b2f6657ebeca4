# Step: pull the image (with the pull credential, in a temporary Docker config).

pull_image() { # pull_image [WHAT_A_FAILURE_MEANS]
  phase pull; event pull
  local rc=0 out
  registry_login
  log "pulling $RUN_IMAGE"
  local progress="$STATE_DIR/pull.progress" beat t0
  : >"$progress"; t0="$(now_ms)"
  # a heartbeat every 5 s while the pull runs: its time, and the layers done of those seen. Its
  # sleep is killed with it, and holds none of the script's descriptors (the session's output, the
  # commands, the lock): one that outlived a kill would keep them open
  (
    s=''
    trap - EXIT; trap '[[ -z "$s" ]] || kill "$s" 2>/dev/null || true; exit 0' TERM
    while :; do
      sleep 5 >/dev/null 2>&1 6<&- 7>&- 8>&- 9>&- & s=$!
      wait "$s" || true
      pull_progress "$progress" "$t0"
    done
  ) & beat=$!
  # docker itself (not docker_call, which holds the output until the end) so progress is seen
  command docker ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} pull -- "$RUN_IMAGE" >"$progress" 2>&1 || rc=$?
  kill "$beat" 2>/dev/null || true; wait "$beat" 2>/dev/null || true
  if ((rc != 0)) && ! docker_answers; then # dockerd restarting: docker_call waits for it
    rc=0; docker_call ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} pull -q -- "$RUN_IMAGE" >"$progress" 2>&1 || rc=$?
  fi
  out="$(tail -n 5 "$progress")"; rm -f "$progress"
  if [[ -n "$REGISTRY_CONFIG" ]]; then rm -rf "$REGISTRY_CONFIG"; REGISTRY_CONFIG=''; fi
  if ((rc != 0)); then
    if docker_call image inspect "$RUN_IMAGE" >/dev/null 2>&1; then
      log "pull failed, using the image already on the server: $out"
    else
      history_add failed-pull
      local anon=''
      if [[ -z "${P[registry_user]}" ]]; then anon=' This server pulled anonymously: for a private image give it a read-only credential in pull-registry-username and pull-registry-password.'; fi
      die "${1:-cannot pull $RUN_IMAGE: is the registry reachable from the server, and was the image pushed? Nothing was changed; the previous version is still serving.}$anon (docker: $out)"
    fi
  fi
  event pulled
}

pull_progress() { # pull_progress FILE START_MS: one line on a pull that runs, from docker's output
  local layers
  layers="$(awk '/: (Pulling fs layer|Waiting|Downloading|Verifying Checksum|Download complete|Extracting|Pull complete|Already exists)$/ {
      id = $1; seen[id] = 1; if ($0 ~ /(Pull complete|Already exists)$/) done[id] = 1 }
    END { n = 0; d = 0; for (i in seen) n++; for (i in done) d++; printf "%d of %d layers done", d, n }' "$1" 2>/dev/null)"
  log "still pulling $RUN_IMAGE: $(( ($(now_ms) - $2) / 1000 ))s, ${layers:-no layer yet}"
}
