#!/bin/bash
# tests/kill_resume_test.sh — crash safety of training runs, end to end (CTest label "crash").
#   glue | digits: the program is SIGKILLed at random moments (saves included) KILLS times in a row,
#     resumed with --resume after each kill (or restarted when no state was saved yet), and every
#     run it completes must equal an uninterrupted one bit for bit: adapters, predictions,
#     results and (glue) the logged step / eval / done records but for their timing fields. Each
#     kill may lose at most one --save-every interval: the last step logged before the kill minus
#     the step of the state resumed from is <= that interval.
#   determinism: the same command twice gives the same bytes (adapters, predictions, results) and
#     the same logged losses; so does a run stopped (--stop-after) inside a logging window of 3
#     steps and resumed (the window's loss sum is saved); a --fast-fft run saves its FFTW wisdom
#     with the state and resumes.
#   disk-full: a resume under a file-size limit (prlimit --fsize) fails at its first save with an
#     error naming the file and a non-zero status; the previous state is intact and resumes to the
#     uninterrupted run's result.
# Usage: kill_resume_test.sh glue FINETUNE_GLUE FIXTURES_DIR [KILLS]
#        kill_resume_test.sh digits FINETUNE_DIGITS [KILLS]
#        kill_resume_test.sh disk-full|determinism FINETUNE_GLUE FIXTURES_DIR
# Needs jq. FOURIERFT_KILL_SEED seeds the kill delays ($RANDOM), so a failure can be replayed.
set -u
mode=$1 program=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
save_every=2
RANDOM=${FOURIERFT_KILL_SEED:-$$}
echo "kill delays seeded with ${FOURIERFT_KILL_SEED:-$$} (FOURIERFT_KILL_SEED)"
fail() { echo "FAIL: $*"; [ -n "${last_log:-}" ] && tail -20 "$last_log"; exit 1; }
command -v jq > /dev/null || fail "jq is needed"

case $mode in
  glue | disk-full | determinism)
    fixtures=$3 kills=${4:-20} log_every=1
    [ "$mode" = determinism ] && log_every=3
    args=(--model "$fixtures/models/roberta-bytes" --task sst2 --data "$fixtures/data/glue/sst2"
          --limit-train 96 --limit-dev 40 --n 32 --epochs 2 --batch 8 --max-len 48
          --log-every $log_every --seed 3 --threads 2)
    files=(adapter/adapter_model.safetensors adapter/adapter_config.json
           best_adapter/adapter_model.safetensors dev_predictions.tsv results.json) ;;
  digits)
    kills=${3:-20}
    args=(--epochs 4 --threads 2)
    files=(pretrained.safetensors head/adapter_model.safetensors fourierft/adapter_model.safetensors
           lora/adapter_model.safetensors full/adapter_model.safetensors) ;;
  *) fail "unknown mode '$mode'" ;;
esac

# A state to resume from in run folder $1 (train::Run: state/ or state.old/; the demos: state/).
has_state() {
  [ -f "$1/state/state.json" ] || [ -f "$1/state.old/state.json" ] || [ -f "$1/state/settings.json" ]
}
# The step of the state --resume will use (find_train_state's choice), 0 without one.
saved_step() {
  local f=$1/state/state.json
  [ -f "$f" ] || f=$1/state.old/state.json
  if [ -f "$f" ]; then jq .step "$f"; else echo 0; fi
}
# The last step logged in $1/log.jsonl (a SIGKILL can leave a torn last line: skipped).
logged_step() {
  [ -f "$1/log.jsonl" ] || { echo 0; return; }
  jq -R 'fromjson? | select(.event == "step") | .step' "$1/log.jsonl" | tail -1 | grep . || echo 0
}
# The log's records that must match an uninterrupted run's, timing fields removed.
log_records() {
  jq -c 'select(.event == "step" or .event == "eval" or .event == "done")
         | del(.time, .ms, .examples_per_s)' "$1/log.jsonl"
}
# Run folder $1 holds what the uninterrupted run $work/ref holds.
check_same() {
  local f
  for f in "${files[@]}"; do
    cmp -s "$work/ref/$f" "$1/$f" || fail "$1/$f differs from the uninterrupted run's"
  done
  if [ "$mode" = digits ]; then
    for m in head fourierft lora full; do
      [ "$(jq -c 'del(.seconds)' "$work/ref/$m/results.json")" = \
        "$(jq -c 'del(.seconds)' "$1/$m/results.json")" ] || fail "$1/$m/results.json differs"
    done
  else
    diff <(log_records "$work/ref") <(log_records "$1") > "$work/log.diff" ||
      fail "$1/log.jsonl differs from the uninterrupted run's: $(head -5 "$work/log.diff")"
    [ "$(jq -c 'select(.event == "start")' "$1/log.jsonl" | wc -l)" = 1 ] || fail "not one start record"
  fi
  [ ! -e "$1/state" ] && [ ! -e "$1/state.new" ] && [ ! -e "$1/state.old" ] || fail "$1: a state is left"
  [ -z "$(find "$1" -name '*.tmp.*')" ] || fail "$1: temporaries left: $(find "$1" -name '*.tmp.*')"
}

last_log=$work/ref.log
start_ns=$(date +%s%N)
"$program" "${args[@]}" --out "$work/ref" > "$last_log" 2>&1 || fail "the uninterrupted run failed"
run_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "uninterrupted run: ${run_ms} ms"

case $mode in
  glue | digits)
    done_kills=0 cycle=0
    while [ $done_kills -lt "$kills" ]; do
      cycle=$((cycle + 1))
      dir=$work/run$cycle
      while :; do
        resume=()
        has_state "$dir" && resume=(--resume)
        last_log=$dir.$done_kills.log
        if [ "$done_kills" -ge "$kills" ]; then  # the last one runs to the end
          "$program" "${args[@]}" --out "$dir" --save-every $save_every "${resume[@]}" > "$last_log" 2>&1 ||
            fail "the final resume failed"
          break
        fi
        "$program" "${args[@]}" --out "$dir" --save-every $save_every "${resume[@]}" > "$last_log" 2>&1 &
        pid=$!
        delay_ms=$(( RANDOM % (run_ms + 1) ))
        sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
        kill -KILL $pid 2> /dev/null
        wait $pid 2> /dev/null
        status=$?
        if [ $status = 0 ]; then  # it finished first: a fresh run takes at most delay_ms now
          # (the first timing can be slow, e.g. beside other tests): later delays stay inside a run
          [ ${#resume[@]} = 0 ] && [ "$delay_ms" -lt "$run_ms" ] && run_ms=$delay_ms
          break
        fi
        [ $status = 137 ] || fail "exit status $status (not the SIGKILL's 137)"
        done_kills=$((done_kills + 1))
        if [ "$mode" = glue ] && has_state "$dir"; then
          lost=$(( $(logged_step "$dir") - $(saved_step "$dir") ))
          [ $lost -le $save_every ] || fail "kill $done_kills after ${delay_ms} ms loses $lost steps"
        fi
        if [ "$mode" = glue ]; then state="state at step $(saved_step "$dir")"
        else state="state: $(ls "$dir/state" 2> /dev/null | tr '\n' ' ')"; fi
        echo "kill $done_kills: after ${delay_ms} ms, $state"
      done
      check_same "$dir"
      echo "run $cycle: complete and identical to the uninterrupted run"
    done ;;
  disk-full)
    dir=$work/full
    last_log=$dir.1.log
    "$program" "${args[@]}" --out "$dir" --stop-after 3 > "$last_log" 2>&1
    [ $? = 130 ] || fail "--stop-after 3 did not stop with status 130"
    limit=$(( $(stat -c %s "$dir/state/trainable.safetensors") / 2 ))
    before=$(cat "$dir/state/state.json" "$dir/state/trainable.safetensors" "$dir/state/optimizer.safetensors" | md5sum)
    last_log=$dir.2.log
    prlimit --fsize=$limit "$program" "${args[@]}" --out "$dir" --resume --save-every 1 > "$last_log" 2>&1
    status=$?
    [ $status = 1 ] || fail "a save past the file-size limit ($limit bytes) exited $status, not 1"
    grep -q "finetune_glue: cannot write '$dir/state.new/trainable.safetensors'" "$last_log" ||
      fail "the error does not name the file"
    after=$(cat "$dir/state/state.json" "$dir/state/trainable.safetensors" "$dir/state/optimizer.safetensors" | md5sum)
    [ "$before" = "$after" ] || fail "the previous state changed"
    last_log=$dir.3.log
    "$program" "${args[@]}" --out "$dir" --resume > "$last_log" 2>&1 || fail "resuming after the failed save failed"
    grep -q "resumed from $dir/state at step 3" "$last_log" || fail "did not resume from step 3"
    check_same "$dir"
    echo "disk full: clear error, previous state intact, resumed to the uninterrupted result" ;;
  determinism)
    last_log=$work/again.log
    "$program" "${args[@]}" --out "$work/again" > "$last_log" 2>&1 || fail "the second run failed"
    check_same "$work/again"
    echo "the same command twice: identical files and logged values"
    dir=$work/window
    last_log=$dir.1.log
    "$program" "${args[@]}" --out "$dir" --stop-after 4 > "$last_log" 2>&1
    [ $? = 130 ] || fail "--stop-after 4 did not stop with status 130"
    last_log=$dir.2.log
    "$program" "${args[@]}" --out "$dir" --resume > "$last_log" 2>&1 || fail "the resume failed"
    check_same "$dir"
    echo "stopped inside a logging window and resumed: identical files and logged losses"
    dir=$work/fast
    last_log=$dir.1.log
    "$program" "${args[@]}" --out "$dir" --fast-fft --stop-after 3 > "$last_log" 2>&1
    [ $? = 130 ] || fail "--fast-fft --stop-after 3 did not stop with status 130"
    head -c 6 "$dir/state/fftw_wisdom" | grep -q '(fftw' || fail "no FFTW wisdom saved with the state"
    last_log=$dir.2.log
    "$program" "${args[@]}" --out "$dir" --fast-fft --resume > "$last_log" 2>&1 || fail "the --fast-fft resume failed"
    echo "--fast-fft: wisdom saved with the state, resumed" ;;
esac
echo "PASS"
