"""llmcompressor_compare.py: llmcompressor's GPTQ beside smelt's on the same model and calibration tokens.

Runs llmcompressor (PyPI `llmcompressor`, the library FMCHISEL builds on) on a Hugging Face folder with the
calibration sequences smelt used (`smelt checkout RUN data.calibration -o DIR` then
`smelt export-calibration DIR -o ids.jsonl`), in one of two schemes:
  w4a16: GPTQModifier, int4 symmetric, group 64 (--group), no act order, damping 0.01, blocks of 128, lm_head kept;
  w8a8:  SmoothQuantModifier (strength 0.8, input_layernorm -> q/k/v, post_attention_layernorm -> gate/up)
         then GPTQModifier with int8 symmetric per-channel weights and int8 dynamic per-token activations.
Every linear's layer-wise error is taken inside llmcompressor from the Hessian it quantized with
(w8a8: for the smoothed q/k/v/gate/up, that Hessian is of the inputs before smoothing, so the error is
taken on S^-1 H S^-1, the smoothed inputs' Hessian, and the stale-Hessian figure is printed beside it):
rel = tr((W^ - W) H (W^ - W)^T) / tr(W H W^T), the same quantity as smelt's rel_error metrics
(||X W^T - X W^T||^2 / ||X W^T||^2 on each tool's own calibration inputs: at layer 0 the inputs are the
same; later layers see the outputs of each tool's own quantized layers). The table puts them beside the
metrics of a smelt quantize stage read from its store, with both wall times.

Usage:
  python3 tools/llmcompressor_compare.py --model HF_DIR --ids ids.jsonl --scheme w4a16 \
      [--store STORE --run RUN --stage STAGE] [--json OUT.json]
llmcompressor pins older torch/transformers than smelt's tools use; tools/llmcompressor_setup.sh installs
it into a virtual environment that shares the system packages (--no-deps) instead of replacing them.
"""
import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict

FAMILIES = ["q", "k", "v", "o", "gate", "up", "down"]
MODULE_FAMILY = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
                 "down_proj": "down"}


def run_llmcompressor(model_dir, ids, scheme, threads, group):
    import torch
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import base as gptq_base
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.smoothquant import SmoothQuantModifier

    torch.set_num_threads(threads)
    errors = {}  # module name -> relative error
    stale = {}   # w8a8: module name -> the error on the Hessian llmcompressor quantized with (see below)
    names = {}
    orig_w = {}  # w8a8: module name -> the weight before smoothing

    orig_compress = gptq_base.GPTQModifier.compress_module_list
    orig_prepare = gptq_base.prepare_batch
    orig_quantize = gptq_base.quantize_weight
    current = []

    def compress(self, module_list):
        names.update(self._module_names)
        return orig_compress(self, module_list)

    def prepare(batch, *a, **k):
        current[:] = [names[m] for m in batch]
        return orig_prepare(batch, *a, **k)

    def quantize(weights, hessians, *a, **k):
        w0, h0 = weights.clone().double(), hessians.clone().double()
        out = orig_quantize(weights, hessians, *a, **k)
        wq = out[0].double()
        for i, name in enumerate(current):
            d, h = wq[i] - w0[i], h0[i]
            if name in orig_w:
                # SmoothQuant + GPTQ: llmcompressor accumulates the Hessian in the same calibration forward
                # that collects SmoothQuant's statistics, i.e. of the inputs BEFORE smoothing, then smooths
                # (W -> W diag(s)) and quantizes the smoothed weights with that Hessian. The layer's real
                # error is on the smoothed inputs x / s: H_s = S^-1 H S^-1, with s read back from the weights.
                wo = orig_w[name]
                s = (w0[i] * wo).sum(0) / (wo * wo).sum(0).clamp_min(1e-30)
                stale[name] = float(((d @ h) * d).sum() / ((w0[i] @ h) * w0[i]).sum())
                h = h / torch.outer(s, s)
            errors[name] = float(((d @ h) * d).sum() / ((w0[i] @ h) * w0[i]).sum())
        return out

    gptq_base.GPTQModifier.compress_module_list = compress
    gptq_base.prepare_batch = prepare
    gptq_base.quantize_weight = quantize

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if scheme == "w8a8":
        for name, mod in model.named_modules():
            if name.split(".")[-1] in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"):
                orig_w[name] = mod.weight.detach().clone().double()
    ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]})
    if scheme == "w4a16":
        recipe = [GPTQModifier(targets="Linear", ignore=["lm_head"], dampening_frac=0.01, block_size=128, actorder=None,
                               config_groups={"group_0": {"targets": ["Linear"], "weights": {
                                   "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                                   "group_size": group}}})]
    else:
        recipe = [SmoothQuantModifier(smoothing_strength=0.8, mappings=[
                      [["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"],
                      [["re:.*gate_proj", "re:.*up_proj"], "re:.*post_attention_layernorm"]]),
                  GPTQModifier(targets="Linear", ignore=["lm_head"], dampening_frac=0.01, block_size=128, actorder=None,
                               scheme="W8A8")]
    t0 = time.perf_counter()
    oneshot(model=model, dataset=ds, recipe=recipe, num_calibration_samples=len(ids),
            max_seq_length=max(len(x) for x in ids), shuffle_calibration_samples=False)
    wall = time.perf_counter() - t0
    def by_layer(errs):
        per_layer = defaultdict(dict)
        for name, e in errs.items():
            parts = name.split(".")
            per_layer[int(parts[parts.index("layers") + 1])][MODULE_FAMILY[parts[-1]]] = e
        return dict(per_layer)
    return by_layer(errors), wall, by_layer(stale)


def smelt_metrics(smelt, store, run, stage):
    def query(sql):
        out = subprocess.run([smelt, "query", "--csv", "--store", store, sql], check=True, capture_output=True, text=True)
        return [line.split(",") for line in out.stdout.strip().splitlines()[1:]]
    per_layer = defaultdict(dict)
    for key, step, value in query(f"SELECT key, step, value FROM metrics WHERE run_id LIKE '{run}%' AND stage = "
                                  f"'{stage}' AND key LIKE 'rel_error_%' AND key != 'rel_error_mean'"):
        per_layer[int(step)][key.strip('"')[len("rel_error_"):]] = float(value)
    secs = query(f"SELECT seconds FROM stages WHERE run_id LIKE '{run}%' AND stage = '{stage}'")
    return dict(per_layer), float(secs[0][0]) if secs and secs[0][0] else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a Hugging Face folder (float)")
    ap.add_argument("--ids", required=True, help="token ids, one JSON array per line (smelt export-calibration)")
    ap.add_argument("--scheme", choices=["w4a16", "w8a8"], default="w4a16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--group", type=int, default=64, help="w4a16 group size (SmolLM2: 64; 576 is no multiple of 128)")
    ap.add_argument("--smelt", default="build/smelt")
    ap.add_argument("--store", help="the smelt store of the quantize stage to compare with")
    ap.add_argument("--run", help="its run id (or prefix)")
    ap.add_argument("--stage", help="the quantize stage")
    ap.add_argument("--recipe", help="run this smelt recipe first (into a fresh store, same machine state as "
                    "llmcompressor's run) and compare with its --stage")
    ap.add_argument("--json", help="write both tables to this file")
    a = ap.parse_args()
    ids = [json.loads(line) for line in open(a.ids) if line.strip()]
    if a.recipe:
        import tempfile
        a.store = tempfile.mkdtemp(prefix="smelt-compare-")
        print(f"load before smelt: {open('/proc/loadavg').read().split()[:3]}", flush=True)
        subprocess.run([a.smelt, "run", a.recipe, "--store", a.store], check=True)
        a.run = ""
    print(f"load before llmcompressor: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    llmc, llmc_wall, llmc_stale = run_llmcompressor(a.model, ids, a.scheme, a.threads, a.group)
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    sm, sm_wall = smelt_metrics(a.smelt, a.store, a.run or "", a.stage) if a.stage else ({}, float("nan"))
    print(f"\n{a.scheme}: {len(ids)} calibration sequences, {sum(map(len, ids))} tokens")
    print(f"{'layer':>5} " + " ".join(f"{f + ' llmc':>11}{f + ' smelt':>11}{'diff':>7}" for f in FAMILIES))
    worst = 0.0
    for layer in sorted(llmc):
        row = f"{layer:5d} "
        for f in FAMILIES:
            e, s = llmc[layer].get(f), sm.get(layer, {}).get(f)
            if e is None or s is None:
                row += f"{'':29}"
                continue
            d = 100.0 * (s - e) / e
            worst = max(worst, abs(d)) if layer == 0 else worst
            row += f"{e:11.3e}{s:11.3e}{d:6.1f}%"
        print(row)
    def mean(t):
        v = [x for r in t.values() for x in r.values()]
        return sum(v) / len(v) if v else float("nan")
    print(f"mean rel. error: llmcompressor {mean(llmc):.4e}, smelt {mean(sm):.4e}; "
          f"wall time: llmcompressor {llmc_wall:.1f} s, smelt {sm_wall:.1f} s")
    if llmc_stale:
        print(f"(w8a8: the smoothed linears' errors above are on the smoothed inputs; on the unsmoothed inputs' Hessian "
              f"that llmcompressor quantized them with, its mean over q/k/v/gate/up would read {mean(llmc_stale):.4e})")
    if a.json:
        json.dump({"scheme": a.scheme, "llmcompressor": {"per_layer": llmc, "seconds": llmc_wall,
                                                         "per_layer_unsmoothed_hessian": llmc_stale},
                   "smelt": {"per_layer": sm, "seconds": sm_wall}}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
