# Distillation aligned with FMCHISEL (issue 9), through the CLI:
# - a teacher whose head is padded beyond the tokenizer (59 extra rows of large weights) gives the
#   same student as the unpadded teacher (losses equal to 1e-5): the padded rows are never compared;
#   a padded student distilled without CE trains exactly as its unpadded twin; a teacher that does
#   not cover the tokenizer is refused;
# - on-policy steps keep CE on the ground truth: the CE of a sampled step (on_policy.ce: data, the
#   default) is the CE of the data batch, equal to a supervised run's on the same first batch, and
#   with on_policy.ce: sampled it is the CE of the sampled tokens (the old behaviour), which differs;
# - JSD with jsd_beta 0 and 1 is forward and reverse KL exactly (equal metrics and losses);
# - TVD, skew KL and skew reverse KL with weights, and prompt_norm: sequence, train and report.
source "$(dirname "$0")/common.sh"
H=${SMELT_DATA_HELPER:?SMELT_DATA_HELPER must point to the data_helper binary}
tiny_recipe r.yaml "    steps: 2"
"$SMELT" run r.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
"$SMELT" checkout latest teacher -o teacher > /dev/null
"$H" pad teacher teacher-pad 59 5
"$H" model small 200 3 16 1
"$H" model init 261 4 32 2
"$H" pad init init-pad 59 6

student() { # student NAME LINE...: a student of the tiny data set, 3 steps; a LINE replaces the default of its key
  local name=$1 init="init: {arch: llama, hidden: 32, layers: 2, heads: 2, kv_heads: 1, intermediate: 64}"
  shift
  case " $* " in *" init: "*) init="" ;; esac
  printf '  %s:\n    kind: train\n    data: data\n    optim: {lr: 3.0e-3, warmup: 1}\n    batch_tokens: 2048\n' "$name"
  printf '    valid_examples: 0\n    steps: 3\n'
  [ -z "$init" ] || printf '    %s\n' "$init"
  printf '    %s\n' "$@"
}
{
  sed -n '1,/^  teacher:/p' r.yaml | sed '$d'
  student plain "teacher: ./teacher" "loss: {fkl: 0.8, ce: 0.2, prompt_weight: 0.1}"
  student padded "teacher: ./teacher-pad" "loss: {fkl: 0.8, ce: 0.2, prompt_weight: 0.1}"
  student init "teacher: ./teacher" "loss: {fkl: 1.0, prompt_weight: 0.1}" "init: ./init"
  student init-pad "teacher: ./teacher" "loss: {fkl: 1.0, prompt_weight: 0.1}" "init: ./init-pad"
  student sup "teacher: ./teacher" "loss: {fkl: 0.9, ce: 0.1}"
  student onpol "teacher: ./teacher" "loss: {fkl: 0.9, ce: 0.1}" "on_policy: {fraction: 1.0, max_new_tokens: 4}"
  student onpol-sampled "teacher: ./teacher" "loss: {fkl: 0.9, ce: 0.1}" \
    "on_policy: {fraction: 1.0, max_new_tokens: 4, ce: sampled}"
  student fkl "teacher: ./teacher" "loss: {fkl: 1.0, temperature: 1.5}"
  student jsd0 "teacher: ./teacher" "loss: {jsd: 1.0, jsd_beta: 0, temperature: 1.5}"
  student rkl "teacher: ./teacher" "loss: {rkl: 1.0, temperature: 1.5}"
  student jsd1 "teacher: ./teacher" "loss: {jsd: 1.0, jsd_beta: 1, temperature: 1.5}"
  student fmchisel "teacher: ./teacher" \
    "loss: {tvd: 0.3, skl: 0.3, srkl: 0.3, skew_alpha: 0.5, ce: 0.1, temperature: 2.0, prompt_weight: 0.1, prompt_norm: sequence}"
} > d.yaml
"$SMELT" run d.yaml > d.out 2>&1 || fail "distillation run failed: $(cat d.out)"
curve() { q "SELECT group_concat(printf('%.9g', value)) FROM (SELECT value FROM metrics WHERE stage = '$1' AND key = '$2' AND run_id = (SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1) ORDER BY step)"; }
close() { # close A B WHAT: two comma-separated curves agree to 1e-5 relative
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, ","); m = split(b, y, ","); if (n != m || n == 0) exit 1;
    for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; s = x[i] < 0 ? -x[i] : x[i];
      if (d > 1e-5 * s + 1e-12) exit 1 } }' || fail "$3: $1 vs $2"
}
close "$(curve plain loss)" "$(curve padded loss)" "a teacher padded by 59 rows gives the same losses"
close "$(curve plain fkl)" "$(curve padded fkl)" "a teacher padded by 59 rows gives the same forward KL"
[ "$(curve plain loss | tr ',' '\n' | wc -l)" -eq 3 ] || fail "the plain student did not train 3 steps"
close "$(curve init loss)" "$(curve init-pad loss)" "a student padded by 59 rows trains as the unpadded one (no CE)"
log=$(cat "$(q "SELECT log_path FROM stages WHERE stage = 'padded' ORDER BY started_at DESC LIMIT 1")")
expect_contains "$log" "teacher head 320 rows, student head 261" "the log names the two heads"

SUP=$(curve sup ce | cut -d, -f1)
close "$(curve onpol ce | cut -d, -f1)" "$SUP" "the CE of a sampled step is the data batch's (FMCHISEL)"
awk -v a="$(curve onpol-sampled ce | cut -d, -f1)" -v b="$SUP" 'BEGIN { d = a - b; exit !(d > 1e-3 || d < -1e-3) }' ||
  fail "on_policy.ce: sampled measures the CE of the samples, not the data's ($SUP)"

close "$(curve jsd0 jsd)" "$(curve fkl fkl)" "JSD at beta 0 is forward KL"
close "$(curve jsd0 loss)" "$(curve fkl loss)" "JSD at beta 0 trains as forward KL"
close "$(curve jsd1 jsd)" "$(curve rkl rkl)" "JSD at beta 1 is reverse KL"
for k in tvd skl srkl ce prompt_loss; do
  [ "$(curve fmchisel $k | tr ',' '\n' | wc -l)" -eq 3 ] || fail "metric $k of the TVD/SKL/SRKL student"
done

# a teacher with fewer rows than the tokenizer's ids is refused before training
{
  sed -n '1,/^  teacher:/p' r.yaml | sed '$d'
  student small-teacher "teacher: ./small" "loss: {fkl: 1.0}"
} > bad.yaml
set +e
"$SMELT" run bad.yaml > bad.out 2>&1
rc=$?
set -e
expect_eq $rc 1 "exit status with a teacher smaller than the tokenizer"
expect_contains "$(q "SELECT error FROM stages WHERE stage = 'small-teacher'")" \
  "has a vocabulary of 200 tokens but the data's tokenizer has 261" "the refusal names both sizes"
pass "distillation: padded heads, CE on the ground truth in on-policy steps, JSD ends, TVD/SKL/SRKL"
