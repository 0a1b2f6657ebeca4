# Step: pull the image (with the pull credential, in a temporary Docker config).

pull_image() { # pull_image [WHAT_A_FAILURE_MEANS]
  phase pull; event pull
  local cfg='' rc=0 out
  if [[ -n "${P[registry_user]}" && -n "$REGISTRY_PASSWORD" ]]; then
    cfg="$(mktemp -d)"
    TMP_PATHS+=("$cfg")
    printf '%s' "$REGISTRY_PASSWORD" | docker_call --config "$cfg" login --username "${P[registry_user]}" --password-stdin -- "${P[registry]}" >/dev/null \
      || die "docker login to ${P[registry]} as ${P[registry_user]} failed on the server"
  fi
  log "pulling $RUN_IMAGE"
  out="$(docker_call ${cfg:+--config "$cfg"} pull -q -- "$RUN_IMAGE" 2>&1)" || rc=$?
  if [[ -n "$cfg" ]]; then rm -rf "$cfg"; fi
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
