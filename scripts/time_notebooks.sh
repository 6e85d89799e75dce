#!/usr/bin/env bash
# Times the study's notebooks, cold (empty feature and run caches), at one or more commits, one
# after the other on this machine: the side-by-side measurement behind docs/speed.md's notebook times.
#
#   scripts/time_notebooks.sh COMMIT [COMMIT ...]      e.g. scripts/time_notebooks.sh 106ac16 HEAD
#
# Each commit is checked out into a temporary git worktree with its own empty cache, results and
# figures (RCP217_ROOT, RCP217_CACHE; its lib/ first on PYTHONPATH), and its notebooks are executed
# in order with papermill, as run_all.sh does, into that worktree. This project's own notebooks,
# results and caches are never touched. Per-notebook seconds go to stdout and, as a table, to
# $TIMING_OUT (default: timing.tsv in the current directory). Uses this project's .venv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ "$#" -ge 1 ] || { echo "usage: $0 COMMIT [COMMIT ...]" >&2; exit 2; }
source "$root/scripts/ensure_env.sh"
out="${TIMING_OUT:-$PWD/timing.tsv}"
# every worktree reads this project's copy of Flickr8k (a worktree has no data/ nor ../shared/ beside it)
export FLICKR8K_DIR="${FLICKR8K_DIR:-$(cd "$root" && python -c 'from flickr_retrieval.data import locate_flickr8k; print(locate_flickr8k())')}"
[ -f "$out" ] || printf 'commit\tnotebook\tseconds\n' > "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/rcp217-timing-XXXXXX")"
cleanup() {
  for tree in "$work"/tree-*; do
    [ -d "$tree" ] && git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

for commit in "$@"; do
  sha="$(git -C "$root" rev-parse --short "$commit^{commit}")"
  tree="$work/tree-$sha"
  git -C "$root" worktree add --detach --quiet "$tree" "$sha"
  mkdir -p "$work/cache-$sha"
  total=0
  for nb in "$tree"/notebooks/[0-9][0-9]_*.ipynb; do
    name="$(basename "$nb")"
    start=$SECONDS
    RCP217_ROOT="$tree" RCP217_CACHE="$work/cache-$sha" PYTHONPATH="$tree/lib${PYTHONPATH:+:$PYTHONPATH}" \
      papermill --cwd "$tree/notebooks" --kernel python3 --no-progress-bar --log-level WARNING "$nb" "$nb" \
      > "$work/$sha-$name.log" 2>&1 || { echo "$sha $name failed, see its log:" >&2; tail -20 "$work/$sha-$name.log" >&2; exit 1; }
    seconds=$((SECONDS - start))
    total=$((total + seconds))
    printf '%s\t%s\t%s\n' "$sha" "$name" "$seconds" | tee -a "$out"
  done
  printf '%s\t%s\t%s\n' "$sha" "total" "$total" | tee -a "$out"
done
