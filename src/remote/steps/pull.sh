# Step: pull the image (with the pull credential, in a temporary Docker config).

pull_image() { # pull_image [WHAT_A_FAILURE_MEANS]
  phase pull; event pull
  local rc=0 out
  registry_login
  log "pulling $RUN_IMAGE"
  out="$(docker_call ${REGISTRY_CONFIG:+--config "$REGISTRY_CONFIG"} pull -q -- "$RUN_IMAGE" 2>&1)" || rc=$?
  if [[ -n "$REGISTRY_CONFIG" ]]; then rm -rf "$REGISTRY_CONFIG"; REGISTRY_CONFIG=''; fi
  if ((rc != 0)); then
    if docker_call image inspect "$RUN_IMAGE" >/dev/null 2>&1; then
      log "pull failed, using the image already on the server: $out"
    else
      history_add failed-pull
      die "${1:-cannot pull $RUN_IMAGE: is the registry reachable from the server, and was the image pushed? Nothing was changed; the previous version is still serving.} (docker: $out)"
    fi
  fi
  event pulled
}
