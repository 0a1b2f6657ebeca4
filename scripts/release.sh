#!/usr/bin/env bash
# Releases bg-deploy itself: scripts/release.sh vX.Y.Z
#
# Run on the commit to release (the release workflow runs it on main). In order, and stopping at
# the first thing that is wrong, before any tag exists:
#   1. the version is vX.Y.Z (or vX.Y.Z-pre), package.json says X.Y.Z, CHANGELOG.md has "## vX.Y.Z";
#   2. the work tree is clean, the commit is on main (RELEASE_BRANCH) or on its line's maintenance
#      branch vX.Y.x, and no tag vX.Y.Z exists at another commit;
#   3. the checks pass: RELEASE_CHECKS (default: lint, unit tests, and dist/ exactly what
#      `npm run bundle` builds);
# then it tags vX.Y.Z (annotated, the CHANGELOG section as its message) and moves the major tag vX
# to it, so `uses: org/bg-deploy@vX` takes it. vX is not moved for a pre-release, nor back to an
# older line (a v1.2.9 made after v1.3.0 leaves v1 at v1.3.0). With RELEASE_REMOTE set, both tags
# are pushed; vX with --force, as a major tag moves. With RELEASE_TAGS_OUT set (the workflow does),
# the refspecs to push are written to that file instead, for the one step that holds the token.
# Running it again for a version already tagged at this commit changes nothing and succeeds.
set -Eeuo pipefail

die() {
  echo "release: $*" >&2
  exit 1
}

version=${1:-}
[[ $version =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] ||
  die "give the version as vX.Y.Z (or vX.Y.Z-rc.1), got '${version}'"
major="v${BASH_REMATCH[1]}"
minor=${BASH_REMATCH[2]}
prerelease=${BASH_REMATCH[4]}
checks=${RELEASE_CHECKS:-'npm run lint && npm run test:unit && npm run bundle && git diff --exit-code --stat -- dist'}
remote=${RELEASE_REMOTE:-}

head=$(git rev-parse HEAD)
pkg=$(node -p 'require("./package.json").version')
[[ $pkg == "${version#v}" ]] ||
  die "package.json says version ${pkg}; set it to ${version#v} (npm version --no-git-tag-version ${version#v}) and commit"
notes=$(awk -v h="## ${version}" '
  index($0, h) == 1 && (length($0) == length(h) || substr($0, length(h) + 1, 1) ~ /[ (]/) { on = 1; next }
  on && /^## / { exit }
  on { print }' CHANGELOG.md 2>/dev/null || true)
[[ -n ${notes//[[:space:]]/} ]] || die "CHANGELOG.md has no section '## ${version}' with what changed; add it and commit"
[[ -z $(git status --porcelain) ]] || die "the work tree has changes that are not committed; commit or stash them"

# only a commit of main (RELEASE_BRANCH), or of its own line's maintenance branch (v1.0.x for a
# v1.0.1), is released: a run started from another branch, or on a commit that never landed, tags
# nothing
branch=${RELEASE_BRANCH:-main}
line="${major}.${minor}.x"
on_branch=no
for b in "$branch" "$line"; do
  for ref in "refs/remotes/${remote:-origin}/${b}" "refs/heads/${b}"; do
    if git rev-parse -q --verify "$ref" >/dev/null && git merge-base --is-ancestor HEAD "$ref"; then
      on_branch=yes
      break 2
    fi
  done
done
[[ $on_branch == yes ]] || die "commit ${head:0:7} is not on ${branch} (nor on ${line}): a release is made from ${branch}, or a patch from its line's branch ${line} (merge it, then run the release there); nothing was tagged"

if existing=$(git rev-parse -q --verify "refs/tags/${version}^{commit}"); then
  [[ $existing == "$head" ]] || die "tag ${version} exists already, at commit ${existing:0:7}; a released version is never moved: release the next one"
  echo "release: ${version} is tagged at this commit already"
fi

echo "release: running the checks: ${checks}"
if ! bash -c "$checks"; then
  die "the checks failed; nothing was tagged"
fi
[[ -z $(git status --porcelain) ]] || die "the checks changed files (is dist/ stale? run npm run bundle and commit); nothing was tagged"

git rev-parse -q --verify "refs/tags/${version}" >/dev/null ||
  git tag -a "$version" -m "bg-deploy ${version}" -m "$notes"

move=yes
if [[ -n $prerelease ]]; then
  move=no
  echo "release: ${version} is a pre-release; ${major} stays where it is"
else
  # the newest release of this major line (pre-releases aside) is where vX belongs
  newest=$(git tag -l "${major}.*" | grep -E '^v[0-9]+\.[0-9]+\.[0-9]+$' | sort -V | tail -n1)
  if [[ $newest != "$version" ]]; then
    move=no
    echo "release: ${newest} is newer than ${version}; ${major} stays at ${newest}"
  fi
fi
[[ $move == yes ]] && git tag -f -a "$major" -m "bg-deploy ${version}" "${version}^{commit}" >/dev/null &&
  echo "release: ${major} -> ${version} (${head:0:7})"

# what to push, one refspec a line (+ forces the major tag), for a later step that holds the token
if [[ -n ${RELEASE_TAGS_OUT:-} ]]; then
  {
    echo "refs/tags/${version}"
    if [[ $move == yes ]]; then echo "+refs/tags/${major}"; fi
  } >"$RELEASE_TAGS_OUT"
fi
if [[ -n $remote ]]; then
  git push "$remote" "refs/tags/${version}"
  if [[ $move == yes ]]; then git push --force "$remote" "refs/tags/${major}"; fi
fi
echo "release: ${version} done"
