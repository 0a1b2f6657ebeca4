# switch-mode dnat: the app's NAT rule, its conntrack entries, and the boot-time restore.

nat_proxied() { # nat_proxied PORT: a docker-proxy process serves this published port (true if we cannot tell)
  command -v pgrep >/dev/null || return 0
  pgrep -f -- "^(/[^ ]*/)?docker-proxy .*-host-port $1( |\$)" >/dev/null
}

as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo -n "$@"; fi; }

# bg-deploy's own chain for this app in the nat table (iptables chain names: at most 28 characters)
nat_chain() {
  local a="${P[app]}"
  if ((${#a} <= 24)); then echo "BGD-$a"; else echo "BGD-${a:0:13}-$(printf '%s' "$a" | cksum | cut -d' ' -f1)"; fi
}

# Make CHAIN send locally generated TCP to 127.0.0.1:LIVE to 127.0.0.1:TARGET, in one transaction:
# declaring the chain in iptables-restore --noflush replaces its rules atomically, so connections
# already open keep their translation (conntrack) and new ones get the new target. The jump from
# nat OUTPUT is added the first time. Nothing else in the nat table is touched.
nat_apply() { # nat_apply CHAIN LIVE TARGET
  local jump=''
  if ! as_root iptables -w -t nat -C OUTPUT -d 127.0.0.1/32 -p tcp --dport "$2" -j "$1" 2>/dev/null; then
    jump="-I OUTPUT 1 -d 127.0.0.1/32 -p tcp --dport $2 -j $1"
  fi
  printf '*nat\n:%s - [0:0]\n-A %s -d 127.0.0.1/32 -p tcp --dport %s -j DNAT --to-destination 127.0.0.1:%s\n%s\nCOMMIT\n' \
    "$1" "$1" "$2" "$3" "$jump" | as_root iptables-restore -w --noflush
}

# The port the app's rule sends the live port to (empty: no rule).
nat_port() {
  as_root iptables -w -t nat -S "$(nat_chain)" 2>/dev/null | sed -n 's/.*--to-destination 127\.0\.0\.1:\([0-9]*\).*/\1/p' | head -n 1
}

nat_color() {
  local p; p="$(nat_port)"
  if [[ "$p" == "${P[blue_port]}" ]]; then echo blue; elif [[ "$p" == "${P[green_port]}" ]]; then echo green; fi
}

# Remove the app's rule and chain (leaving dnat mode, or undoing a first dnat switch).
# shellcheck disable=SC2317 # also called indirectly, as upstream_switch's undo command
nat_remove() {
  local chain rule
  chain="$(nat_chain)"
  while read -r rule; do
    # shellcheck disable=SC2086 # the rule's words, as iptables -S printed them
    as_root iptables -w -t nat ${rule/#-A/-D} 2>/dev/null || true
  done < <(as_root iptables -w -t nat -S OUTPUT 2>/dev/null | awk -v c="$chain" '$(NF - 1) == "-j" && $NF == c')
  as_root iptables -w -t nat -F "$chain" 2>/dev/null || true
  as_root iptables -w -t nat -X "$chain" 2>/dev/null || true
}

# dnat mode: a connection that the old color's side ended with a reset keeps its conntrack entry
# (state CLOSE, nf_conntrack_tcp_timeout_close: 10 s) and, with it, the old translation: a new
# connection from nginx that reuses its source port reuses that entry and reaches the old color,
# after the switch, and after the old color stopped: a 502. Right after the switch and again after
# the drain, those CLOSE entries from the live port to the old color are deleted, so every new
# connection is translated anew. TIME_WAIT entries (closed with FINs) are left alone: the kernel
# translates a reused one anew by itself, and deleting them, thousands at a time, would now and then
# hit the fresh entry of a connection that just reused the port. False when conntrack cannot be
# used here (no conntrack tool, or no root for it).
nat_forget() { # nat_forget OLD_COLOR
  [[ "$SWITCH_MODE" == dnat && "$PREV_MODE" == dnat ]] || return 0
  local port
  port="$(color_port "$1")"
  as_root conntrack -L -p tcp --orig-dst 127.0.0.1 --dport "${P[live_port]}" --reply-port-src "$port" --state CLOSE >/dev/null 2>&1 || return 1
  # exit 1 when no entry matched
  as_root conntrack -D -p tcp --orig-dst 127.0.0.1 --dport "${P[live_port]}" --reply-port-src "$port" --state CLOSE >/dev/null 2>&1 || true
}

# Without conntrack, how long the old color runs on after the drain: the kernel's CLOSE timeout.
nat_stop_delay() { # nat_stop_delay OLD_COLOR -> seconds
  log "conntrack (package conntrack) is not usable here: $(container_name "$1") keeps running for the kernel's CLOSE timeout before it stops, so no reused connection reaches a stopped container"
  cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close 2>/dev/null || echo 10
}

# Before anything changes: dnat mode needs iptables as root (or passwordless sudo), and nginx must
# not keep upstream connections alive (a pooled connection would stay on the old color).
nat_preflight() {
  command -v iptables-restore >/dev/null || as_root sh -c 'command -v iptables-restore' >/dev/null 2>&1 \
    || die "switch-mode dnat needs iptables (package iptables) on the server"
  as_root iptables -w -t nat -S OUTPUT >/dev/null 2>&1 \
    || die "switch-mode dnat needs root on the server, or passwordless sudo for iptables and iptables-restore (user $(id -un) has neither). Nothing was changed. Use switch-mode reload, or allow it in sudoers: $(id -un) ALL=(root) NOPASSWD: /usr/sbin/iptables, /usr/sbin/iptables-restore"
  if [[ -f "${P[upstream_file]}" ]] && grep -qE '^[[:space:]]*keepalive[[:space:]]' "${P[upstream_file]}"; then
    die "switch-mode dnat cannot work with 'keepalive' in the upstream block of ${P[upstream_file]}: nginx would keep pooled connections to the old color. Remove it (bg-deploy writes that file), or use switch-mode reload. Nothing was changed."
  fi
}

# At boot the NAT rules are gone: a restore script (every app in dnat mode under this state root,
# from its state file) and, where systemd runs, a unit that calls it. The unit runs the script as
# the user who owns it (a deploy user runs iptables through its sudo rule), never as root a file
# that a deploy user can edit; the script takes only a chain name and port numbers from a state file.
nat_install_restore() {
  local root script user unit
  root="$(dirname "$STATE_DIR")"; script="$root/restore-dnat.sh"; user="$(id -un)"
  unit="/etc/systemd/system/$(nat_unit_name "$user")"
  {
    printf '#!/usr/bin/env bash\n# Written by bg-deploy: puts back the NAT rule of every app deployed with switch-mode dnat\n'
    printf '# under %s, from its state file. Run at boot (%s), or by hand.\nset -u\n' "$root" "$(nat_unit_name "$user")"
    declare -f as_root nat_apply state_get
    printf 'rc=0\nfor state in %q/*/state; do\n' "$root"
    cat <<'EOS'
  [[ -f "$state" ]] || continue
  STATE_DIR="${state%/state}"
  [[ "$(state_get switch_mode)" == dnat ]] || continue
  chain="$(state_get nat_chain)"; live="$(state_get live_port)"; port="$(state_get port)"
  if ! [[ "$chain" =~ ^BGD-[A-Za-z0-9_.-]{1,24}$ && "$live" =~ ^[0-9]{1,5}$ && "$port" =~ ^[0-9]{1,5}$ ]]; then
    echo "skipped $state: it does not hold a bg-deploy chain name and two ports" >&2; rc=1; continue
  fi
  if nat_apply "$chain" "$live" "$port"; then echo "restored $chain: 127.0.0.1:$live -> 127.0.0.1:$port"
  else echo "could not restore $chain from $state" >&2; rc=1; fi
done
exit "$rc"
EOS
  } >"$script.tmp" || { log "warning: could not write $script"; return 0; }
  chmod 700 "$script.tmp"
  mv -f "$script.tmp" "$script"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    if [[ ! -f "$unit" ]] || ! grep -qxF "User=$user" "$unit"; then
      if nat_unit "$user" "$script" | as_root tee "$unit" >/dev/null && as_root systemctl daemon-reload \
        && as_root systemctl enable "$(nat_unit_name "$user")" >/dev/null 2>&1; then
        log "installed $(nat_unit_name "$user"): it restores the NAT rule at boot, as $user"
      else
        log "warning: could not install $unit; run $script at boot to restore the NAT rule"
      fi
    fi
  else
    log "no systemd here: run $script at boot as $user to restore the NAT rule (it reads the state files)"
  fi
}

nat_unit_name() { if [[ "$1" == root ]]; then echo bg-deploy-dnat.service; else echo "bg-deploy-dnat-$1.service"; fi; }

nat_unit() { # nat_unit USER SCRIPT: the systemd unit that runs SCRIPT as USER at boot
  printf '[Unit]\nDescription=bg-deploy: restore the NAT rules of apps in switch-mode dnat (%s)\nAfter=network.target docker.service\n\n[Service]\nType=oneshot\nUser=%s\nExecStart=/bin/bash %s\n\n[Install]\nWantedBy=multi-user.target\n' "$1" "$1" "$2"
}
