#!/usr/bin/env bash
# Makes tests/fixtures/metrics/: small E2E inputs and the reference values that tests/test_metrics.cpp
# compares fourierft's metrics with. Run once by a maintainer, from the repository root; the tests
# never run it. The reference values come from the official scorers' own code, which is NOT part of
# this repository: put local copies in $REF_DIR (default /tmp/metrics_ref) first:
#   $REF_DIR/mteval/mteval-v13a-sig.pl   tuetschek/e2e-metrics  mteval/mteval-v13a-sig.pl (the E2E
#       scorer's BLEU/NIST), run as measure_scores.py runs it; only its final summary line is
#       printed with %.10f instead of %.4f.
#   $REF_DIR/coco/{rouge.py,cider.py,cider_scorer.py}   pycocoevalcap as in tylin/coco-caption
#       commit bfd15962 (the Python 3 port e2e-metrics vendors); cider.py imports cider_scorer
#       absolutely instead of relatively.
#   $REF_DIR/meteor/src/...   METEOR 1.5's Java classes (cmu-mtlab/meteor: Aligner, MeteorScorer,
#       Constants; PartialAlignment, Stage, ExactMatcher, StemMatcher, Alignment, MeteorStats,
#       Normalizer from forks of it), compiled with a harness main (MeteorStdio) that speaks the
#       -stdio protocol pycocoevalcap uses, modules exact+stem, English 'rank' parameters; the
#       Snowball stemmer is replaced by a word->stem table from Debian's python3-snowballstemmer.
# Needs: g++ (C++20), perl, java 17, /usr/bin/python3 with numpy, scipy, sklearn, future,
# snowballstemmer (Debian: python3-numpy python3-scipy python3-sklearn python3-future
# python3-snowballstemmer), and ../shared/data/e2e/testset_w_refs.csv for the inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
REF_DIR=${REF_DIR:-/tmp/metrics_ref}
DATA=${DATA:-../shared/data/e2e/testset_w_refs.csv}
OUT=tests/fixtures/metrics
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# 1. Inputs: 20 MRs of the E2E test set (every 31st, first-appearance order) with all references;
#    one output per MR: its first reference (then held out unless it is the only one), as is,
#    lightly edited, lowercased with a word dropped, or another MR's reference.
$PY - "$DATA" "$OUT" <<'EOF'
import csv, sys
src, out = sys.argv[1], sys.argv[2]
groups = {}
for mr, ref in list(csv.reader(open(src, encoding='utf-8')))[1:]:
    groups.setdefault(mr, []).append(ref)
mrs = list(groups)[::31][:20]
edits = [("is not", "isn't"), ("It is", "It's"), ("children", "kids"), ("child", "kid"),
         ("rating", "rated"), ("located", "situated"), ("serves", "serving"), (" the ", " a "),
         ("restaurant", "restaurants"), ("friendly", "friendly-ish")]
hyps, refgroups = [], []
for i, mr in enumerate(mrs):
    refs = groups[mr]
    held = refs[0]
    refgroups.append(refs[1:] if len(refs) > 1 else refs)
    if i % 4 == 0:
        hyp = held
    elif i % 4 == 1:
        hyp = held
        for a, b in edits[:5]:
            hyp = hyp.replace(a, b)
    elif i % 4 == 2:
        hyp = groups[mrs[(i + 1) % len(mrs)]][0]
    else:
        hyp = held.lower()
        for a, b in edits[5:]:
            hyp = hyp.replace(a, b)
        words = hyp.split()
        hyp = ' '.join(words[:-3] + words[-2:])
    hyps.append(hyp)
with open(out + '/e2e_hyps.txt', 'w', encoding='utf-8') as f:
    f.write('\n'.join(hyps) + '\n')
with open(out + '/e2e_refs.txt', 'w', encoding='utf-8') as f:
    f.write('\n\n'.join('\n'.join(g) for g in refgroups) + '\n')
with open(out + '/e2e_refs.csv', 'w', encoding='utf-8', newline='') as f:
    w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator='\n')
    w.writerow(['mr', 'ref'])
    for mr, g in zip(mrs, refgroups):
        for r in g:
            w.writerow([mr, r])
EOF

# 1b. A small hand-made case for the corner cases: repeated words and reordering (METEOR's beam
#     search and chunks), an identical pair, stem-only matches, an empty output, a 1-word reference.
printf '%s\n' "the cat sat on the mat near the cat" "a b c d" "running dogs run fast" "" \
  "near the river there is a shop" > "$OUT/small_hyps.txt"
printf '%s\n' "on the mat the cat sat" "the cat is on the mat" "" "d c b a" "" "the dog runs fast" \
  "dogs running" "" "something" "" "near the river there is a shop" "a shop by the river" \
  > "$OUT/small_refs.txt"

# 2. The COCO scorers' input: fourierft's coco_tokenize (our re-implementation of the PTB step;
#    CoreNLP itself was not available). Committed, so the tokenizer is pinned by the tests too.
cat > "$WORK/tok.cpp" <<'EOF'
#include <iostream>
#include "fourierft/metrics/generation.hpp"
int main(int, char** argv) {
  using namespace fourierft::metrics;
  for (const auto& l : text::read_lines(argv[1]))
    std::cout << (text::strip(l).empty() ? "" : coco_tokenize(text::strip(l))) << "\n";
}
EOF
g++ -std=c++20 -O2 -Iinclude "$WORK/tok.cpp" -o "$WORK/tok"
"$WORK/tok" "$OUT/e2e_hyps.txt" > "$OUT/e2e_hyps.tok"
"$WORK/tok" "$OUT/e2e_refs.txt" > "$OUT/e2e_refs.tok"
"$WORK/tok" "$OUT/small_hyps.txt" > "$OUT/small_hyps.tok"
"$WORK/tok" "$OUT/small_refs.txt" > "$OUT/small_refs.tok"

# 3. Reference values with the official code.
( cd "$REF_DIR/meteor" && mkdir -p build/nonbreaking && : > build/nonbreaking/english.prefixes &&
  javac -d build $(find src -name '*.java') )
$PY - "$OUT" "$REF_DIR" "$WORK" <<'EOF'
import json, os, re, subprocess, sys
out, ref_dir, work = sys.argv[1:4]
sys.path.insert(0, os.path.join(ref_dir, 'coco'))
from rouge import Rouge
from cider import Cider
import snowballstemmer

def read_lines(name, multi_ref=False):  # measure_scores.py
    buf = [[]] if multi_ref else []
    with open(name, encoding='UTF-8') as fh:
        for line in fh:
            line = line.strip()
            if multi_ref:
                if not line:
                    buf.append([])
                else:
                    buf[-1].append(line)
            else:
                buf.append(line)
    if multi_ref and not buf[-1]:
        del buf[-1]
    return buf

def create_mteval_file(refs, path, file_type):  # measure_scores.py
    data = [[]]
    for inst_no, inst in enumerate(refs):
        if not isinstance(inst, list):
            inst = [inst]
        for ref_no, ref in enumerate(inst):
            if len(data) <= ref_no:
                data.append([''] * inst_no)
            data[ref_no].append(ref)
        ref_no += 1
        while ref_no < len(data):
            data[ref_no].append('')
            ref_no += 1
    with open(path, 'w', encoding='UTF-8') as fh:
        settype = file_type + 'set'
        fh.write('<%s setid="%s" srclang="any" trglang="%s">\n' % (settype, 'e2e', 'en'))
        for inst_set_no, inst_set in enumerate(data):
            sysid = file_type + ('' if len(data) == 1 else '_%d' % inst_set_no)
            fh.write('<doc docid="test" genre="news" origlang="any" sysid="%s">\n<p>\n' % sysid)
            for inst_no, inst in enumerate(inst_set, start=1):
                fh.write('<seg id="%d">%s</seg>\n' % (inst_no, inst))
            fh.write('</p>\n</doc>\n')
        fh.write('</%s>' % settype)

def score(name):
    refs = read_lines(os.path.join(out, name + '_refs.txt'), multi_ref=True)
    hyps = read_lines(os.path.join(out, name + '_hyps.txt'))
    assert len(refs) == len(hyps)
    create_mteval_file(refs, os.path.join(work, 'ref.sgm'), 'ref')
    create_mteval_file(hyps, os.path.join(work, 'sys.sgm'), 'tst')
    create_mteval_file([''] * len(hyps), os.path.join(work, 'src.sgm'), 'src')
    mt = subprocess.check_output(['perl', os.path.join(ref_dir, 'mteval', 'mteval-v13a-sig.pl'),
                                  '-r', os.path.join(work, 'ref.sgm'), '-s', os.path.join(work, 'src.sgm'),
                                  '-t', os.path.join(work, 'sys.sgm'), '-f', os.path.join(work, 'log.txt')],
                                 stderr=subprocess.STDOUT).decode()
    nist = float(re.search(r'NIST score = ([0-9.]+)', mt).group(1))
    bleu = float(re.search(r'BLEU score = ([0-9.]+)', mt).group(1))

    # COCO scorers on the tokenised text (what PTBTokenizer.tokenize hands them).
    tok_h = [l.rstrip('\n') for l in open(os.path.join(out, name + '_hyps.tok'), encoding='utf-8')]
    tok_r, cur = [], []
    for l in open(os.path.join(out, name + '_refs.tok'), encoding='utf-8'):
        l = l.rstrip('\n')
        if l:
            cur.append(l)
        elif cur:
            tok_r.append(cur)
            cur = []
    if cur:
        tok_r.append(cur)
    assert len(tok_r) == len(tok_h) and [len(g) for g in tok_r] == [len(g) for g in refs]
    gts = {'inst-%d' % i: g for i, g in enumerate(tok_r)}
    res = {'inst-%d' % i: [h] for i, h in enumerate(tok_h)}
    rouge_l, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)

    # METEOR 1.5 (exact + stem) through the -stdio protocol, as pycocoevalcap's Meteor.compute_score.
    stemmer = snowballstemmer.stemmer('english')
    vocab = set()
    for s in tok_h + [r for g in tok_r for r in g]:
        for t in s.split():
            vocab.add(t)
            vocab.update(p for p in re.split(r"[-']", t) if p)
            vocab.update("'" + p for p in re.split(r"[-']", t) if p)
            vocab.add("'")
    stem_table = os.path.join(work, 'stems.tsv')
    with open(stem_table, 'w', encoding='utf-8') as f:
        for w in sorted(vocab):
            f.write('%s\t%s\n' % (w, stemmer.stemWord(w)))
    function_words = ['a', 'an', 'the', 'is', 'it', 'of', 'in', 'and', 'near', 'has', 'with', 'that', 'at', 'by', "'", 's']

    def run_meteor(words):
        fw = os.path.join(work, 'function.words')
        with open(fw, 'w', encoding='utf-8') as f:
            f.write(''.join(w + '\n' for w in words))
        p = subprocess.Popen(['java', '-cp', os.path.join(ref_dir, 'meteor', 'build'), 'MeteorStdio',
                              stem_table, fw], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        eval_line = 'EVAL'
        for i in gts:
            h = res[i][0].replace('|||', '').replace('  ', ' ')
            p.stdin.write(('%s\n' % ' ||| '.join(('SCORE', ' ||| '.join(gts[i]), h))).encode())
            p.stdin.flush()
            eval_line += ' ||| {}'.format(p.stdout.readline().decode().strip())
        p.stdin.write(('%s\n' % eval_line).encode())
        p.stdin.flush()
        for _ in gts:
            p.stdout.readline()
        score = float(p.stdout.readline().strip())
        p.stdin.close()
        p.wait()
        return score

    values = {
        'BLEU': bleu, 'NIST': nist, 'METEOR': run_meteor([]), 'ROUGE_L': float(rouge_l),
        'CIDEr': float(cider), 'METEOR_with_function_words': run_meteor(function_words),
        'function_words': function_words,
    }
    with open(os.path.join(out, name + '_reference.json'), 'w', encoding='utf-8') as f:
        json.dump(values, f, indent=2)
        f.write('\n')
    print(name, json.dumps(values, indent=2))

for name in ('e2e', 'small'):
    score(name)
EOF

# 4. GLUE metrics on fixed inputs: sklearn and scipy.
$PY - "$OUT" <<'EOF'
import json, os, sys
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
out = sys.argv[1]
pred = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0]
label = [1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
multi_pred = [0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 1]
multi_label = [0, 1, 2, 1, 1, 0, 2, 2, 0, 0, 1, 2]
# STS-B style: gold scores with ties (0.5 steps), predictions with ties too.
x = [3.8, 2.5, 4.0, 0.6, 2.5, 5.0, 1.2, 3.0, 2.5, 4.4, 0.0, 3.0]
y = [4.0, 2.0, 4.0, 1.0, 2.5, 5.0, 1.5, 3.5, 2.5, 4.0, 0.5, 3.0]
cases = {
    'binary': {'pred': pred, 'label': label,
               'accuracy': accuracy_score(label, pred), 'f1': f1_score(label, pred),
               'mcc': matthews_corrcoef(label, pred)},
    'multiclass': {'pred': multi_pred, 'label': multi_label,
                   'accuracy': accuracy_score(multi_label, multi_pred),
                   'mcc': matthews_corrcoef(multi_label, multi_pred)},
    'all_one_class': {'pred': [1] * 8, 'label': [1, 0, 1, 1, 0, 1, 0, 1],
                      'mcc': matthews_corrcoef([1, 0, 1, 1, 0, 1, 0, 1], [1] * 8),
                      'f1': f1_score([1, 0, 1, 1, 0, 1, 0, 1], [1] * 8)},
    'no_positive': {'pred': [0] * 6, 'label': [0] * 6,
                    'f1': f1_score([0] * 6, [0] * 6, zero_division=0)},
    'regression': {'x': x, 'y': y, 'pearson': pearsonr(x, y)[0], 'spearman': spearmanr(x, y)[0],
                   'rank_x': list(map(float, __import__('scipy').stats.rankdata(x)))},
}
with open(os.path.join(out, 'glue_reference.json'), 'w') as f:
    json.dump(cases, f, indent=2, default=float)
    f.write('\n')
print(json.dumps(cases, indent=2, default=float))
EOF
echo "wrote $OUT"
