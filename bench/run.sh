#!/usr/bin/env bash
# run.sh [OPTIONS]: bufferkit's benchmark (issue 7, `make bench`). Builds what it needs, runs
# every part, prints one table and writes it with a long-format CSV under bench/results/.
#
#   --python PY       the main interpreter: every part runs on it (default: the CPython 3.11
#                     that find_pythons lists)
#   --compare "PY.."  interpreters that run the C level again for the Exporter comparison
#                     (bufferkit's slot on 3.9-3.11 vs CPython's native __buffer__ dispatch on
#                     3.12+; rows: floor, bytearray, memoryview, Buffer, Exporter). Default: the
#                     3.9, 3.10 and 3.12 of find_pythons; "" for none; e.g. --compare python3.12
#   --quick           fewer rounds and repeats (to try the driver, not to quote)
#   --profile | --no-profile
#                     profile the bufferkit rows whose instruction targets missed, with a
#                     debug-info build made at the start (default: profile only when something
#                     missed; --profile: always; --no-profile: neither the build nor the profile)
#   --keep            keep the callgrind dumps under build/bench/runs/<stamp>/
#   --wall            time with wall clocks (CLOCK_MONOTONIC, perf_counter) instead of CPU time
#   --newest SPEC     the second interpreter of the object-operations table (issue 15), an
#                     interpreter spec of scripts/lib.sh (e.g. sid:/usr/bin/python3.15). Default:
#                     the newest python3.N of the sid chroot $BK_CACHE/sid, else the newest pyenv
#                     CPython (said in the table); "" for none
#   --ft PY           the free-threaded interpreter of the threaded-exports table (issue 14),
#                     run with PYTHON_GIL=0. Default: the newest $BK_CACHE/cpython-3.*t; "" for none
#
# What runs, per interpreter (bench/README.md explains each figure):
#   1. scripts/build.sh PY (the shipped build), snapshot into build/bench/pkg/<kind>/;
#      gcc builds bench/floor.c (the floor exporter, an extension module) and bench/cbench.c
#      (the embedding harness) into build/bench/<cpXY>/
#   2. cbench list; cbench time (taskset -c 0); cbench count under callgrind -> report.py cgparse
#   3. main interpreter only: cbench mem; bench/pybench.py (taskset -c 0); bench/pymem.py
#   4. object operations (issue 15) on the main and the newest interpreter: bench/objbench.py
#      time (taskset -c 0) and count under callgrind (window: bench/objloop.c, compiled in the
#      interpreter's environment; in the sid chroot with a copy of this machine's valgrind);
#      threaded exports (issue 14) on the free-threaded interpreter: bench/threadbench.py
#   5. report.py report -> the table, PASS/MISS lines, bench/results/<stamp>-<cpXY>.{txt,csv}
#   6. if an instruction target missed: a profiling build (CARGO_PROFILE_RELEASE_DEBUG=true,
#      build/target/bench) and callgrind_annotate excerpts -> bench/results/<stamp>-<cpXY>-profile.txt
#   7. report.py objreport appends the object-operations and threads tables to the table and
#      the CSV, and excerpts of the operations above 1.0 to the profile file
# Exits non-zero only when something could not be built or run; a MISS is a result, not a failure.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
cd "$BK_ROOT"

orig_args="$*"
main_py=""
compare_set=0
compare=()
quick=0
profile=auto
keep=0
clock=cpu
newest=auto
ft=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --python) main_py=$2; shift 2 ;;
    --compare) compare_set=1; read -r -a compare <<<"$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --profile) profile=yes; shift ;;
    --no-profile) profile=no; shift ;;
    --keep) keep=1; shift ;;
    --wall) clock=wall; shift ;;
    --newest) newest=$2; shift 2 ;;
    --ft) ft=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

pick_minor() { find_pythons | grep -E "/3\.$1\.[0-9]+/bin/python3$" | tail -n 1; }
if [ -z "$main_py" ]; then
  main_py=$(pick_minor 11)
  [ -n "$main_py" ] || { echo "run.sh: no CPython 3.11 found with pyenv; pass --python PY" >&2; exit 2; }
fi
if [ "$compare_set" = 0 ]; then
  for m in 9 10 12; do
    p=$(pick_minor "$m")
    [ -n "$p" ] && compare+=("$p")
  done
fi

if [ "$quick" = 1 ]; then
  ROUNDS=21 TARGET_US=100 CG_N=500 PY_ARGS=(--repeats 9 --big-repeats 3 --target 0.001)
  OBJ_TIME=(--repeats 7 --target 0.0005) OBJ_COUNT=(--scale 0.3) THREAD_ARGS=(--seconds 0.2 --rounds 2)
else
  ROUNDS=101 TARGET_US=200 CG_N=1000 PY_ARGS=(--repeats 101 --big-repeats 15 --target 0.001)
  OBJ_TIME=(--repeats 51 --target 0.002) OBJ_COUNT=(--scale 1) THREAD_ARGS=(--seconds 0.5 --rounds 7)
fi
COMPARE_ROWS=floor,bytearray,mv_1d,bk_buffer_1d,bk_exporter
PIN=(); pin_desc="not pinned (no taskset)"
if command -v taskset >/dev/null && taskset -c 0 true 2>/dev/null; then PIN=(taskset -c 0); pin_desc="taskset -c 0"; fi
command -v valgrind >/dev/null || { echo "run.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }

stamp=$(date +%Y%m%d-%H%M%S)
main_tag=$(py_tag "$main_py")
run="$BK_ROOT/build/bench/runs/$stamp"
mkdir -p "$run" bench/results
log="$run/log.txt"
t_start=$(date +%s)
say() { echo "==> $* ($(( $(date +%s) - t_start ))s)" >&2; }
# Everything that is not the table goes to the log; on failure, show its end.
fail() { echo "run.sh: $*; the end of $log:" >&2; tail -n 30 "$log" >&2; exit 1; }

export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1

# tree_id: which sources a build saw (HEAD plus uncommitted changes of everything built)
tree_id() { { git rev-parse HEAD; git diff HEAD -- src module Cargo.toml Cargo.lock build.rs python; } 2>/dev/null | sha1sum | cut -c1-12; }

tags=()
declare -A built=() venv_of=() kind_of=() home_of=() sitepk_of=()
prepare() { # prepare PY: build bufferkit, the venv, floor and cbench for PY
  local py=$1 tag kind vpy inc platinc libdir ldversion shared syslibs base suffix out link
  tag=$(py_tag "$py"); kind=$(build_kind "$py") || fail "cannot use $py"
  if [ -z "${built[$kind]:-}" ]; then
    say "building bufferkit ($kind) with $("$py" -V 2>&1): scripts/build.sh"
    echo "tree $(tree_id) before scripts/build.sh $py" >>"$log"
    # once more on failure: a concurrent build into the same build/target/<kind> (make test in
    # the same checkout) can remove maturin's artefact under it
    scripts/build.sh "$py" >>"$log" 2>&1 || { sleep 5; scripts/build.sh "$py" >>"$log" 2>&1; } \
      || fail "scripts/build.sh $py failed"
    [ "$py" = "$main_py" ] && shipped_tree=$(tree_id)
    # a snapshot: other runs of scripts/build.sh replace build/<kind>/ while we measure
    rm -rf "build/bench/pkg/$kind" && mkdir -p "build/bench/pkg/$kind"
    cp -r "build/$kind/bufferkit" "build/bench/pkg/$kind/"
    built[$kind]=1
  fi
  vpy=$(ensure_venv "$py" 2>>"$log") || fail "cannot make the venv of $py"
  mapfile -t cfg < <("$py" - <<'EOF'
import sys, sysconfig
v = sysconfig.get_config_var
p = sysconfig.get_paths()
print(p["include"]); print(p["platinclude"]); print(v("LIBDIR") or ""); print(v("LDVERSION") or v("VERSION"))
print(int(bool(v("Py_ENABLE_SHARED")))); print(" ".join(x for x in (v("LIBS"), v("SYSLIBS")) if x))
print(sys.base_prefix); print(v("EXT_SUFFIX")); print(v("LIBPL") or "")
EOF
  )
  inc=${cfg[0]} platinc=${cfg[1]} libdir=${cfg[2]} ldversion=${cfg[3]} shared=${cfg[4]} syslibs=${cfg[5]}
  base=${cfg[6]} suffix=${cfg[7]}
  if [ "$shared" = 1 ]; then
    link=(-L"$libdir" -lpython"$ldversion" -Wl,-rpath,"$libdir")
  else
    link=(-L"${cfg[8]}" -lpython"$ldversion" $syslibs -Wl,-export-dynamic)
  fi
  out="build/bench/$tag"; mkdir -p "$out"
  # -O2 -g: optimised like an extension module, with symbols for callgrind
  gcc -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -I"$inc" -I"$platinc" \
    bench/floor.c -o "$out/_bench_floor$suffix" >>"$log" 2>&1 || fail "compiling bench/floor.c for $tag"
  gcc -std=c11 -Wall -Wextra -Werror -O2 -g -I"$inc" -I"$platinc" \
    bench/cbench.c -o "$out/cbench" "${link[@]}" -lm >>"$log" 2>&1 || fail "compiling bench/cbench.c for $tag"
  venv_of[$tag]=$vpy kind_of[$tag]=$kind home_of[$tag]=$base
  sitepk_of[$tag]=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  tags+=("$tag")
}

# cbench_env TAG [PKGDIR]: the environment of the embedded interpreter
cbench_env() {
  local tag=$1 pkg=${2:-$BK_ROOT/build/bench/pkg/${kind_of[$1]}}
  echo "PYTHONPATH=$BK_ROOT/bench:$BK_ROOT/build/bench/$tag:$pkg:${sitepk_of[$tag]}" "PYTHONHOME=${home_of[$tag]}"
}

# c_level TAG ROWS: list, time, count for one interpreter ("" = every row)
c_level() {
  local tag=$1 rows=$2 exe="build/bench/$1/cbench" cg="$run/cg-$1"
  local -a envv; read -r -a envv <<<"$(cbench_env "$tag")"
  say "$tag: C level (list, time: $ROUNDS rounds)"
  env "${envv[@]}" BENCH_ROWS="$rows" "$exe" list >"$run/c-$tag-list.tsv" 2>>"$log" || fail "cbench list ($tag)"
  env "${envv[@]}" BENCH_ROWS="$rows" "${PIN[@]}" "$exe" time "$ROUNDS" "$TARGET_US" "$clock" >"$run/c-$tag-time.tsv" 2>>"$log" \
    || fail "cbench time ($tag)"
  say "$tag: C level under callgrind (N = $CG_N)"
  mkdir -p "$cg"
  env "${envv[@]}" BENCH_ROWS="$rows" valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect=bk_bench_loop --dump-after=bk_bench_loop --dump-instr=no \
    --compress-strings=no --compress-pos=no --callgrind-out-file="$cg/cg.out" \
    "$exe" count "$CG_N" >"$cg/seq.tsv" 2>"$cg/valgrind.txt" || { cat "$cg/valgrind.txt" >>"$log"; fail "callgrind ($tag)"; }
  "$RPY" bench/report.py cgparse "$cg/seq.tsv" "$cg" "$CG_N" >"$run/c-$tag-count.tsv" 2>>"$log" || fail "cgparse ($tag)"
}

say "main interpreter $("$main_py" -V 2>&1) ($main_py); compare: ${compare[*]:-none}"
prepare "$main_py"
RPY=${venv_of[$main_tag]} # runs bench/report.py (standard library only)
for py in "${compare[@]}"; do
  [ "$(py_tag "$py")" = "$main_tag" ] || prepare "$py"
done

# The profiling build (debug info, same features), made now so that it sees the same sources as
# the shipped build just made (the working tree may change while the benchmark runs).
if [ "$profile" != no ]; then
  kind=${kind_of[$main_tag]}
  say "profiling build of bufferkit (CARGO_PROFILE_RELEASE_DEBUG=true, build/target/bench)"
  feat=(); [ "$kind" = abi3 ] && feat=(--features abi3)
  PYO3_PYTHON="$main_py" CARGO_TARGET_DIR="$BK_ROOT/build/target/bench" CARGO_PROFILE_RELEASE_DEBUG=true \
    cargo build --release -p bufferkit-module --lib "${feat[@]}" >>"$log" 2>&1 || fail "the profiling build"
  profile_tree=$(tree_id)
  dbg="$BK_ROOT/build/bench/pkg-debug/$kind"
  rm -rf "$dbg" && mkdir -p "$dbg/bufferkit"
  cp python/bufferkit/*.py "$dbg/bufferkit/"
  so=$(basename "$(ls "build/bench/pkg/$kind/bufferkit/"_bufferkit*.so)")
  cp build/target/bench/release/lib_bufferkit.so "$dbg/bufferkit/$so"
fi

{
  echo -e "meta\tdate\t$(date '+%Y-%m-%d %H:%M %Z')"
  echo -e "meta\thost\t$(hostname)"
  echo -e "meta\tcpu\t$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
  echo -e "meta\tncpu\t$(getconf _NPROCESSORS_ONLN)"
  echo -e "meta\tcommand\t${BENCH_COMMAND:-bench/run.sh${orig_args:+ $orig_args}}"
  echo -e "meta\tgit\t$(git describe --always --dirty 2>/dev/null || echo '?') (tree $shipped_tree)"
  echo -e "meta\tpin\t$pin_desc"
  echo -e "meta\tclock\t$clock"
  echo -e "meta\tload\t$(cut -d' ' -f1-3 /proc/loadavg)"
  echo -e "meta\tmain_tag\t$main_tag"
  echo -e "meta\ttags\t${tags[*]}"
  echo -e "meta\tcg_n\t$CG_N"
  echo -e "meta\tpy_small\t${PY_ARGS[1]} repeats of ~1 ms"
  echo -e "meta\tpy_big\t${PY_ARGS[3]} repeats"
  for t in "${tags[@]}"; do echo -e "meta\tversion_$t\t$("${venv_of[$t]}" -c 'import sys; print(sys.version.split()[0])')"; done
  echo -e "meta\tnumpy\t$("${venv_of[$main_tag]}" -c 'import numpy; print(numpy.__version__)')"
} >"$run/meta.tsv"

# the rows' metadata, for the report
env $(cbench_env "$main_tag") "${venv_of[$main_tag]}" - >"$run/rows.json" 2>>"$log" <<'EOF' || fail "reading bench_rows"
import json, bench_rows as b
print(json.dumps({"rows": [{"key": r.key, "label": r.label, "group": r.group, "bufferkit": r.bufferkit} for r in b.ROWS],
                  "groups": b.GROUPS, "floor": b.FLOOR}))
EOF

c_level "$main_tag" ""
for t in "${tags[@]}"; do
  [ "$t" = "$main_tag" ] || c_level "$t" "$COMPARE_ROWS"
done

say "$main_tag: memory (10^4 live exports of 256 MiB; 10^5 Views)"
env $(cbench_env "$main_tag") "build/bench/$main_tag/cbench" mem >"$run/c-$main_tag-mem.tsv" 2>>"$log" || fail "cbench mem"
env PYTHONPATH="$BK_ROOT/bench:$BK_ROOT/build/bench/$main_tag:$BK_ROOT/build/bench/pkg/${kind_of[$main_tag]}" \
  "${venv_of[$main_tag]}" bench/pymem.py >"$run/pymem-$main_tag.tsv" 2>>"$log" || fail "bench/pymem.py"

say "$main_tag: Python level (bench/pybench.py ${PY_ARGS[*]})"
env PYTHONPATH="$BK_ROOT/bench:$BK_ROOT/build/bench/$main_tag:$BK_ROOT/build/bench/pkg/${kind_of[$main_tag]}" \
  "${PIN[@]}" "${venv_of[$main_tag]}" bench/pybench.py "${PY_ARGS[@]}" $( [ "$clock" = wall ] && echo --wall ) >"$run/py-$main_tag.tsv" 2>>"$log" \
  || fail "bench/pybench.py"
echo -e "meta\tload_end\t$(cut -d' ' -f1-3 /proc/loadavg)" >>"$run/meta.tsv"

# ---- object operations (issue 15) and threaded exports (issue 14)
if [ "$newest" = auto ]; then
  newest=$(ls "$BK_CACHE"/sid/usr/bin/ 2>/dev/null | grep -E '^python3\.[0-9]+$' | sort -V | tail -n 1)
  if [ -n "$newest" ]; then newest="sid:/usr/bin/$newest"
  else
    newest=$(find_pythons | tail -n 1)
    echo -e "skip\tnewest\tno sid chroot with a python3.N at $BK_CACHE/sid (scripts/pythons.sh makes it): the second object-operations table is the newest pyenv CPython, $newest" >>"$run/meta.tsv"
  fi
fi
if [ "$ft" = auto ]; then
  ft=$(ls -d "$BK_CACHE"/cpython-3.*t 2>/dev/null | grep -E 't$' | sort -V | tail -n 1)
  [ -n "$ft" ] && ft=$(ls "$ft"/bin/python3.*t 2>/dev/null | head -n 1)
  [ -n "$ft" ] || echo -e "skip\tthreads\tno free-threaded CPython at $BK_CACHE/cpython-3.*t (scripts/pythons.sh makes one)" >>"$run/meta.tsv"
fi

obj_tags=()
obj_level() { # obj_level SPEC: bench/objbench.py time and count on SPEC
  local spec=$1 exe tag kind vpy out pkg inc suffix vg
  exe=$(spec_exe "$spec")
  tag=$(py_tag "$spec") || fail "cannot run $spec"
  kind=$(build_kind "$spec") || fail "cannot use $spec"
  pkg="$BK_ROOT/build/bench/pkg/$kind"
  if [ ! -d "$pkg/bufferkit" ]; then
    say "building bufferkit ($kind) for $spec"
    in_env "$spec" scripts/build.sh "$exe" >>"$log" 2>&1 || fail "scripts/build.sh $spec failed"
    mkdir -p "$pkg" && cp -r "build/$kind/bufferkit" "$pkg/"
  fi
  vpy=$(in_env "$spec" bash -c '. scripts/lib.sh; ensure_venv "$1"' _ "$exe" 2>>"$log") || fail "cannot make the venv of $spec"
  out="$BK_ROOT/build/bench/obj-$tag"; mkdir -p "$out"
  read -r inc suffix < <(pyx "$spec" -c 'import sysconfig; print(sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"))')
  in_env "$spec" gcc -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -I"$inc" bench/objloop.c \
    -o "$out/_bench_objloop$suffix" >>"$log" 2>&1 || fail "compiling bench/objloop.c for $tag"
  local -a envv=(env PYTHONPATH="$BK_ROOT/bench:$out:$pkg" OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0)
  say "$tag: object operations (bench/objbench.py time ${OBJ_TIME[*]})"
  in_env "$spec" "${envv[@]}" "$vpy" bench/objbench.py list >"$run/obj-$tag-list.tsv" 2>>"$log" || fail "objbench list ($tag)"
  "${PIN[@]}" bash -c '. scripts/lib.sh; in_env "$@"' _ "$spec" "${envv[@]}" "$vpy" bench/objbench.py time "${OBJ_TIME[@]}" \
    $( [ "$clock" = wall ] && echo --wall ) >"$run/obj-$tag-time.tsv" 2>>"$log" || fail "objbench time ($tag)"
  say "$tag: object operations under callgrind (bench/objbench.py count ${OBJ_COUNT[*]})"
  vg=$(valgrind_for "$spec") || fail "no valgrind for $spec"
  mkdir -p "$run/cg-obj-$tag"
  in_env "$spec" "${envv[@]}" $vg --tool=callgrind --collect-atstart=no --toggle-collect=bk_obj_run \
    --dump-after=bk_obj_run --dump-instr=no --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$run/cg-obj-$tag/cg.out" "$vpy" bench/objbench.py count "${OBJ_COUNT[@]}" \
    >"$run/obj-$tag-seq.tsv" 2>"$run/cg-obj-$tag/valgrind.txt" || { cat "$run/cg-obj-$tag/valgrind.txt" >>"$log"; fail "objbench count ($tag)"; }
  obj_tags+=("$tag")
}
obj_level "$main_py"
if [ -n "$newest" ] && [ "$(py_tag "$newest")" != "$main_tag" ]; then obj_level "$newest"; fi
echo -e "meta\tobj_tags\t${obj_tags[*]}" >>"$run/meta.tsv"

if [ -n "$ft" ]; then
  ft_kind=$(build_kind "$ft") || fail "cannot use $ft"
  say "building bufferkit ($ft_kind) for the threaded exports: scripts/build.sh $ft"
  scripts/build.sh "$ft" >>"$log" 2>&1 || fail "scripts/build.sh $ft failed"
  rm -rf "build/bench/pkg/$ft_kind" && mkdir -p "build/bench/pkg/$ft_kind" && cp -r "build/$ft_kind/bufferkit" "build/bench/pkg/$ft_kind/"
  ft_out="$BK_ROOT/build/bench/obj-$ft_kind"; mkdir -p "$ft_out"
  read -r inc suffix < <("$ft" -c 'import sysconfig; print(sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"))')
  gcc -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -I"$inc" bench/objloop.c -o "$ft_out/_bench_objloop$suffix" \
    >>"$log" 2>&1 || fail "compiling bench/objloop.c for $ft_kind"
  say "$ft_kind: threaded exports, PYTHON_GIL=0 (bench/threadbench.py ${THREAD_ARGS[*]})"
  { PYTHON_GIL=0 PYTHONPATH="$BK_ROOT/build/bench/pkg/$ft_kind:$ft_out" "$ft" bench/threadbench.py "${THREAD_ARGS[@]}" 2>>"$log"; } \
    >"$run/threads.tsv" || fail "bench/threadbench.py ($ft)"
  echo -e "meta\ttag\t$ft_kind" >>"$run/threads.tsv"
fi

say "report"
base="bench/results/$stamp-$main_tag"
echo >&2
"$RPY" bench/report.py report "$run" "$base.csv" "$base.txt" || fail "report.py"

if [ "$profile" = yes ] || { [ "$profile" = auto ] && [ -s "$run/misses.tsv" ]; }; then
  [ -s "$run/misses.tsv" ] || printf 'bk_buffer_1d\tFULL_RO\nbk_view_slice\tFULL_RO\nbk_buffer_2d\tFULL_RO\n' >"$run/misses.tsv"
  say "profiling the missed targets under callgrind"
  rows=$(cut -f1 "$run/misses.tsv" | sort -u | paste -sd, -),floor,bytearray
  cg="$run/cg-profile"; mkdir -p "$cg"
  env $(cbench_env "$main_tag" "$dbg") BENCH_ROWS="$rows" valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect=bk_bench_loop --dump-after=bk_bench_loop --dump-instr=no \
    --compress-strings=no --compress-pos=no --callgrind-out-file="$cg/cg.out" \
    "build/bench/$main_tag/cbench" count 1000 >"$cg/seq.tsv" 2>"$cg/valgrind.txt" || fail "callgrind (profile)"
  "$RPY" bench/report.py cgparse "$cg/seq.tsv" "$cg" 1000 >"$run/profile-count.tsv"
  {
    echo "Profiling build: cargo build --release with debug info (CARGO_PROFILE_RELEASE_DEBUG=true), same"
    echo "features, sources tree $profile_tree (the shipped build: tree $shipped_tree$( [ "$profile_tree" = "$shipped_tree" ] || echo ', DIFFERENT: the working tree changed between the builds')); Ir per pair:"
    join -t $'\t' <(awk -F'\t' '{print $2"/"$3"\t"$4}' "$run/profile-count.tsv" | sort) \
                  <(awk -F'\t' '{print $2"/"$3"\t"$4}' "$run/c-$main_tag-count.tsv" | sort) |
      awk -F'\t' '{printf "  %-28s profiling %8.1f  shipped %8.1f\n", $1, $2, $3}'
    echo
  } >"$base-profile.txt"
  "$RPY" bench/report.py profile "$run" "$cg/seq.tsv" "$cg" "$run/profile-excerpt.txt" 1000 "$BK_ROOT" >/dev/null
  cat "$run/profile-excerpt.txt" >>"$base-profile.txt"
  echo "profiles of the missed targets: $base-profile.txt"
fi

"$RPY" bench/report.py objreport "$run" "$base.csv" "$base.txt" "$base-profile.txt" || fail "report.py objreport"
[ -s "$base-profile.txt" ] && echo "profiles: $base-profile.txt"

[ "$keep" = 1 ] || rm -rf "$run"/cg-*
echo "table: $base.txt  csv: $base.csv  raw records: $run/  ($(( $(date +%s) - t_start ))s)"
