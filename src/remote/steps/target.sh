# Step (rollback): the version to go back to and its image, from the history of successful deploys
# here: `previous`, the newest one that is not serving now; or a version, with the registry's tag
# as its image when it was never deployed here. Sets RUN_VERSION and RUN_IMAGE.

# The versions deployed here, for a message (set by target_pick).
TARGET_AVAILABLE=''

target_pick() { # target_pick CURRENT_VERSION
  local current="$1" line available
  available="$(history_versions | cut -f1 | paste -sd ' ' -)"
  if [[ "${P[target]}" == previous ]]; then
    line="$(history_versions | awk -F'\t' -v cur="$current" '$1 != cur { print; exit }')"
    [[ -n "$line" ]] || die "there is no earlier version of ${P[app]} to roll back to (serving: ${current:-unknown}; deployed here: ${available:-none})"
    RUN_VERSION="${line%%$'\t'*}"; RUN_IMAGE="${line#*$'\t'}"
  else
    RUN_VERSION="${P[target]}"
    line="$(history_versions | awk -F'\t' -v v="$RUN_VERSION" '$1 == v { print; exit }')"
    if [[ -n "$line" ]]; then RUN_IMAGE="${line#*$'\t'}"; else RUN_IMAGE="${P[image]}"; fi
  fi
  TARGET_AVAILABLE="$available"
}
