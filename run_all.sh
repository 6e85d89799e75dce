#!/usr/bin/env bash
# Sets up the pinned environment (first run), then runs the whole study:
#   every notebook in notebooks/, in order, headlessly with papermill (outputs written back),
#   figures into figures/, exports into results/, and an HTML report into report/ (open report/index.html).
#
#   ./run_all.sh            the real study, notebooks rewritten in place
#   QUICK=1 ./run_all.sh    a fast smoke run on small settings; notebooks, results and figures go to
#                           report/quick/, the study's own are untouched
#   ./run_all.sh 05 06      only the notebooks whose names start with these prefixes
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
# the arithmetic training runs in here: bfloat16 only where the CPU has it natively and measured faster
python -c "from flickr_retrieval import precision; print('==', precision.describe())"

out_dir=notebooks
params=()
if [ "${QUICK:-0}" = "1" ]; then
  out_dir=report/quick
  params=(-p quick True)
  mkdir -p "$out_dir"
  # a smoke run writes its exports, figures and run checkpoints there too, never over the study's
  export RCP217_RESULTS="$PWD/report/quick/results" RCP217_FIGURES="$PWD/report/quick/figures"
fi

selected=()
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name="$(basename "$nb")"
  if [ "$#" -eq 0 ]; then selected+=("$nb"); continue; fi
  for prefix in "$@"; do [[ "$name" == "$prefix"* ]] && selected+=("$nb"); done
done

for nb in "${selected[@]}"; do
  name="$(basename "$nb")"
  echo "== $(date +%H:%M:%S) running $name"
  start=$SECONDS
  papermill --cwd notebooks --kernel python3 --no-progress-bar "${params[@]}" "$nb" "$out_dir/$name"
  echo "   done in $((SECONDS - start)) s"
done

echo "== exporting the HTML report"
mkdir -p report
jupyter nbconvert --to html --log-level WARN --output-dir report "$out_dir"/[0-9][0-9]_*.ipynb
python -m flickr_retrieval.report report "$out_dir"
echo "== report: $(pwd)/report/index.html"
