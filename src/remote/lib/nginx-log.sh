# nginx's effective config (`nginx -T`), read: will nginx log the app's answers where the watch
# reads them? An access_log directive applies where it is written and is inherited by an inner
# block (http > server > location) only when that block has none of its own; `access_log off`
# turns every log of its block off. So each block that proxies to the app's upstream is judged by
# the innermost block around it with access_log directives of its own.

# The verdicts, one line per block that proxies to the upstream (tab-separated: kind, two
# details, where that block is, where its server block is):
#   http              inherits the http level, where the upstream file adds the watch's log
#   ours FILE         its block has logs of its own and includes FILE, a file bg-deploy owns,
#                     which then carries the watch's log line beside them
#   need LEVEL WHERE  its LEVEL block (at WHERE) has logs of its own and no include of ours
#   off LEVEL WHERE   access_log off at WHERE turns every log of that block off
# and `none` when no block proxies to the upstream by its name.
nginx_log_verdicts() { # nginx_log_verdicts UPSTREAM_NAME OUR_LOG OUR_FILE... < nginx -T output
  local name="$1" log="$2"; shift 2
  awk -v name="$name" -v ourlog="$log" -v ours_list="$*" '
    function tokenize(f,    i, j, line, ch, word, inword, q, n) {
      n = 0
      for (i = 1; i <= nl[f]; i++) {
        line = tx[f, i]; word = ""; inword = 0; q = ""
        for (j = 1; j <= length(line); j++) {
          ch = substr(line, j, 1)
          if (q != "") {
            if (ch == "\\" && j < length(line)) { j++; word = word substr(line, j, 1); continue }
            if (ch == q) { q = ""; continue }
            word = word ch; continue
          }
          if (ch == "\"" || ch == "\047") { q = ch; inword = 1; continue }
          if (ch == "#" && !inword) break
          if (ch == " " || ch == "\t" || ch == "\r") { if (inword) { tk[f, ++n] = word; tl[f, n] = i; word = ""; inword = 0 } continue }
          if (ch == "{" && substr(word, length(word)) == "$") { word = word ch; inword = 1; continue }
          if (ch == "{" || ch == "}" || ch == ";") {
            if (inword) { tk[f, ++n] = word; tl[f, n] = i; word = ""; inword = 0 }
            tk[f, ++n] = ch; tl[f, n] = i; continue
          }
          word = word ch; inword = 1
        }
        if (inword) { tk[f, ++n] = word; tl[f, n] = i }
      }
      nt[f] = n
    }
    function glob_re(p,    out, i, ch) {
      out = ""
      for (i = 1; i <= length(p); i++) {
        ch = substr(p, i, 1)
        if (ch == "*") out = out "[^/]*"
        else if (ch == "?") out = out "[^/]"
        else if (ch == "[" || ch == "]") out = out ch
        else if (index(".+()^$|{}\\", ch)) out = out "\\" ch
        else out = out ch
      }
      return "^" out "$"
    }
    function walk(f, depth,    i, j2, k, w, c, re, g, t, wline) {
      if (depth > 20 || !(f in nl)) return
      if (!(f in nt)) tokenize(f)
      k = 0
      for (i = 1; i <= nt[f]; i++) {
        t = tk[f, i]
        if (t != "{" && t != "}" && t != ";") { if (k == 0) wline = tl[f, i]; w[++k] = t; continue }
        c = stk[sp]
        if (t == "{") {
          id = ++nctx; tp[id] = w[1]; par[id] = c; wh[id] = f ":" wline; stk[++sp] = id
        } else if (t == "}") {
          if (sp > 0) sp--
        } else if (w[1] == "access_log") {
          if (w[2] == "off") { off[c] = 1; offw[c] = f ":" wline }
          else if (w[2] != ourlog && !(c in has)) has[c] = f ":" wline
        } else if (w[1] == "proxy_pass") {
          if (w[2] ~ ("^https?://" name "(/|$)")) px[++np] = c
        } else if (w[1] == "include" && k >= 2) {
          g = w[2]; if (substr(g, 1, 1) != "/") g = prefix g
          re = glob_re(g)
          for (j2 = 1; j2 <= nf; j2++) {
            if (files[j2] !~ re) continue
            if (index(" " ours_list " ", " " files[j2] " ") && !(c in ours)) ours[c] = files[j2]
            walk(files[j2], depth + 1)
          }
        }
        k = 0; delete w
      }
    }
    /^# configuration file .*:$/ {
      cur = substr($0, 22, length($0) - 22)
      if (!(cur in nl)) { files[++nf] = cur; nl[cur] = 0 }
      next
    }
    cur != "" { tx[cur, ++nl[cur]] = $0 }
    END {
      if (nf == 0) { print "none"; exit }
      prefix = files[1]; sub(/[^\/]*$/, "", prefix)
      sp = 1; stk[1] = 0; tp[0] = "main"
      walk(files[1], 0)
      if (np == 0) { print "none"; exit }
      for (i = 1; i <= np; i++) {
        p = px[i]; if (p in done) continue; done[p] = 1
        v = ""; cand = ""
        for (c = p; c != "" && c != 0; c = par[c]) {
          if (tp[c] != "location" && tp[c] != "server" && tp[c] != "http") continue
          if (c in off) {
            if (cand != "" && tp[c] == "http") v = "ours\t" ours[cand] "\t" cand
            else v = "off\t" tp[c] "\t" offw[c]
            break
          }
          if (tp[c] == "http") { v = "http\t\t" wh[c]; break }
          if (c in has) {
            if (c in ours) v = "ours\t" ours[c] "\t" c
            else v = "need\t" tp[c] "\t" wh[c]
            break
          }
          if ((c in ours) && cand == "") cand = c
        }
        if (v == "") v = "http\t\t"
        if (v ~ /^ours\t/) { split(v, parts, "\t"); v = "ours\t" parts[2] "\t" wh[parts[3]] }
        srv = ""
        for (c = p; c != "" && c != 0; c = par[c]) if (tp[c] == "server") { srv = wh[c]; break }
        print v "\t" wh[p] "\t" srv
      }
    }'
}
