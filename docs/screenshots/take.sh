#!/usr/bin/env bash
# Screenshots of `promptcot ui` for docs/usage.md, taken with headless Chromium (Debian: apt-get install chromium).
# Run from a directory where `promptcot run experiments/quickstart.yaml` has finished (its mlflow/ store):
#   bash docs/screenshots/take.sh OUT_DIR
set -euo pipefail
out=${1:-docs/screenshots}
mkdir -p "$out"  # chromium writes no file into a missing folder, and says nothing
port=5077
promptcot ui --port "$port" >/tmp/promptcot-ui.log 2>&1 &
ui=$!
trap 'kill $ui' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
read -r exp parent stage model < <(python - <<'PY'
from mlflow.tracking import MlflowClient
c = MlflowClient("sqlite:///mlflow/mlflow.db")
e = c.get_experiment_by_name("quickstart")
runs = {r.info.run_name: r.info.run_id for r in c.search_runs([e.experiment_id])}
models = c.search_logged_models([e.experiment_id])
print(e.experiment_id, runs["quickstart/main"], runs["em"], next(m.model_id for m in models if m.name == "em-iter_002-prompt_model"))
PY
)
shot() {  # NAME URL HEIGHT (the charts render lazily: a long virtual-time budget lets them draw; 90 s of it left them blank once)
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,"${3:-1000}" \
    --virtual-time-budget=240000 --screenshot="$out/$1.png" "$2" 2>/dev/null
}
base="http://127.0.0.1:$port/#/experiments/$exp"
view="workflowType=machine_learning"  # the UI's model-training navigation (what `promptcot ui` prints)
shot experiment "$base/runs?$view"
shot stage_run "$base/runs/$stage/model-metrics?$view" 1400
shot models "$base/models?$view"
shot model "$base/models/$model?$view" 1500
ls "$out"/{experiment,stage_run,models,model}.png >/dev/null  # fail if one was not written
echo "screenshots in $out"
