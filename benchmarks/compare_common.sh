# benchmarks/compare_common.sh — sourced by compare.sh and compare_generate.sh, with `program` set to
# the bench program they run: takes "[build-dir] [--]" off the arguments and finds the program,
# python and the thread count; parse_cases and run_side are the argument loop and one side of a case.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$(basename "$0")"
build="${BUILD:-$here/../build}"
if [[ $# -gt 0 && "$1" != "--" ]]; then build="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
bench="$build/benchmarks/$program"
[[ -x "$bench" ]] || { echo "$script: $bench not found (configure with -DFOURIERFT_BUILD_BENCHMARKS=ON and make $program)" >&2; exit 1; }
python="${PYTHON:-/usr/bin/python3}"
export FOURIERFT_NUM_THREADS="${FOURIERFT_NUM_THREADS:-2}"

# parse_cases PASSED "$@": each --case C into `cases`, --all into all=1; the options named in PASSED
# (each with its value) into `args`, or, with PASSED empty, every other argument.
parse_cases() {
  local passed="$1"
  shift
  cases=()
  args=()
  all=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --case) cases+=("$2"); shift 2 ;;
      --all) all=1; shift ;;
      *)
        if [[ -z "$passed" ]]; then args+=("$1"); shift
        elif [[ " $passed " == *" $1 "* ]]; then args+=("$1" "$2"); shift 2
        else echo "$script: unknown argument $1 (--case, --all, ${passed// /, })" >&2; exit 2
        fi ;;
    esac
  done
}

# run_side IMPL POLICY COMMAND...: runs COMMAND (under OMP_WAIT_POLICY=PASSIVE if POLICY is
# passive); its rows, renamed IMPL_POLICY (fourierft_default, pytorch_passive, ...), are printed
# and appended to $out/IMPL.tsv.
run_side() {
  local impl="$1" policy="$2"
  shift 2
  if [[ "$policy" == passive ]]; then OMP_WAIT_POLICY=PASSIVE "$@"; else "$@"; fi |
    sed "s/^$impl/${impl}_$policy/" | tee -a "$out/$impl.tsv"
}

# The first line of the output: when, where, and how busy the machine is.
print_run_header() {
  echo "# $(date -u '+%F %T UTC') | $(nproc) cores | threads $FOURIERFT_NUM_THREADS | OPENBLAS_CORETYPE ${OPENBLAS_CORETYPE:-unset} (both sides) | load: $(cut -d' ' -f1-3 /proc/loadavg)"
}
