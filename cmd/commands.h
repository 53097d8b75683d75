/* commands.h: the subcommands, one file each in cmd/, and their rows of the command table.
 * Adding a command: declare its function here and add one row to COMMANDS_TABLE. */
#ifndef SMELT_COMMANDS_H
#define SMELT_COMMANDS_H

#include "cmd/cli.h"
#include "cmd/slurm_cli.h"

int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_why(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_checkout(int argc, char **argv);
int cmd_export_calibration(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_slurm_stage(int argc, char **argv);

#define STORE_HELP "  --store DIR   the artifact store (default: $SMELT_STORE, else ./smelt-store)\n"

#define COMMANDS_TABLE                                                                                                 \
    {"run", cmd_run, "run a recipe (reusing every stage already computed)",                                           \
     "usage: smelt run RECIPE [--store DIR] [--set KEY.PATH=VALUE]... [--jobs N] [--name NAME]\n\n"                    \
     "Validates the recipe, prints the new run id, and runs its stages in dependency order.\n"                        \
     "A stage whose cache key already completed anywhere in the store is reused, not recomputed.\n\n"               \
     STORE_HELP                                                                                                        \
     "  --set K=V     override a recipe value, e.g. --set stages.train.steps=100 (repeatable)\n"                      \
     "  --jobs N      run up to N independent stages at once (default 1)\n"                                           \
     "  --name NAME   a name for the run (default: the recipe's name)\n\n"                                            \
     "Exit status: 0 all stages ok, 1 a stage failed, 2 bad usage or an invalid recipe.\n", 0},                       \
    {"plan", cmd_plan, "show what a run would do, writing nothing",                                                    \
     "usage: smelt plan RECIPE [--store DIR] [--set KEY.PATH=VALUE]... [--slurm [SLURM OPTIONS]]\n\n"               \
     "Lists the stages in order, each 'run' or 'cached (from run X)', with the reason.\n"                             \
     "With --slurm, also prints the sbatch script of every job 'smelt submit --slurm' would submit and\n"           \
     "their dependency chain (see 'smelt submit --help' for the options). Submits nothing.\n"                       \
     "Writes nothing: the store's files are unchanged.\n\n" STORE_HELP, 0},                                            \
    {"resume", cmd_resume, "continue a failed or interrupted run",                                                    \
     "usage: smelt resume RUN [--store DIR] [--jobs N] [SLURM OPTIONS]\n\n"                                          \
     "Re-runs only the stages of RUN that are not complete, with the recipe text stored for the run.\n"              \
     "Stages continue from their in-stage checkpoints. RUN is an id, a unique prefix, or 'latest'.\n"                \
     "A run submitted to Slurm is resumed on Slurm: its pending and running jobs are adopted, stages\n"              \
     "done stay done, the others are submitted again (one state query, at most one scancel). The\n"                  \
     "Slurm options of 'smelt submit' given here replace the run's defaults for the new jobs.\n\n" STORE_HELP,        \
     0},                                                                                                               \
    {"status", cmd_status, "show the stages of a run",                                                                \
     "usage: smelt status [RUN] [--store DIR]\n\n"                                                                    \
     "Shows each stage's status, attempts, time and log of RUN (default: the latest run). For a run\n"              \
     "submitted to Slurm: each stage's job id, Slurm state, elapsed time and node, read with one\n"                 \
     "batched sacct or squeue call.\n\n" STORE_HELP, 0},                                                               \
    {"runs", cmd_runs, "list the runs in the store",                                                                  \
     "usage: smelt runs [--store DIR] [--limit N]\n\n" STORE_HELP "  --limit N     show the N newest runs (default 50)\n", \
     0},                                                                                                               \
    {"why", cmd_why, "explain why a stage ran instead of being reused",                                               \
     "usage: smelt why RUN STAGE [--store DIR]\n\n"                                                                   \
     "Prints the field-level difference between the stage's cache key and the closest earlier key of a\n"          \
     "stage with the same name, or says that the stage is new.\n\n" STORE_HELP, 0},                                   \
    {"query", cmd_query, "run read-only SQL over the store's views",                                                 \
     "usage: smelt query [--csv|--json] [--store DIR] \"SQL\"\n\n"                                                     \
     "Views: runs, stages, artifacts, metrics, latest_metrics, lineage, params (see README 'Query views').\n"        \
     "Any statement that would write is refused.\n\n" STORE_HELP                                                       \
     "  --csv         comma-separated output with a header row\n"                                                     \
     "  --json        a JSON array of objects\n", 0},                                                                 \
    {"report", cmd_report, "the paper's tables for a run, and an HTML page with plots",                             \
     "usage: smelt report [RUN] [--store DIR] [--html FILE] [--raw]\n\n"                                             \
     "For every model an evaluate or benchmark stage measured: kind, parameters, bytes, AUC and its delta\n"       \
     "against the evaluation's reference; per benchmark: p50/p99 TTFT and TPOT, throughput, prefix hits,\n"        \
     "cold and hot prefill; evaluations and AUC per task, training, pruning, quantization. Fits 100 columns.\n"            \
     "A value that was not measured is '-'. RUN defaults to the latest run.\n\n" STORE_HELP                         \
     "  --html FILE   also write a self-contained HTML page (inline SVG, no script): the tables, AUC\n"              \
     "                against parameters and TTFT with the Pareto front, per-layer pruning and\n"                    \
     "                quantization errors, loss curves, latency distributions\n"                                      \
     "  --raw         one row per stage with the latest value of each of its metrics\n", 0},                       \
    {"compare", cmd_compare, "compare two runs, or the models of runs side by side",                                \
     "usage: smelt compare RUN_A RUN_B [--store DIR] [--html FILE]\n"                                               \
     "       smelt compare --models [RUN]... [--store DIR] [--kind KIND] [--sort KEY]\n\n"                          \
     "Two runs, stage by stage: whether each ran or was reused and whether its cache key is the same in\n"        \
     "both runs, the parameters that differ, the latest metrics that differ (with the delta), the first\n"        \
     "stage where the lineage diverges with the key fields that make it differ, and each model's AUC,\n"          \
     "TTFT and bytes in both runs.\n"                                                                                \
     "--models: every model of the runs (default: the latest) in one table: kind, parameters, bytes,\n"           \
     "AUC, TTFT and TPOT p50, AUC per millisecond of TTFT.\n\n" STORE_HELP                                          \
     "  --html FILE   also write the comparison of two runs as a self-contained HTML page\n"                        \
     "  --models      the models of the runs side by side (runs are lettered A, B, ...)\n"                          \
     "  --kind KIND   only models made by stages of this kind (train, prune, quantize, command), or by\n"           \
     "                a kind and method ('quantize gptq')\n"                                                        \
     "  --sort KEY    auc or auc-per-ms (largest first), params, bytes, ttft or tpot (smallest first)\n", 0},      \
    {"export", cmd_export, "write a run with its artifacts to an archive",                                            \
     "usage: smelt export RUN -o FILE.tar.zst [--store DIR]\n\n"                                                      \
     "Writes the run's recipe, stages, lineage, metrics and every artifact object to a zstd-compressed tar.\n\n"     \
     STORE_HELP "  -o FILE       the archive to write (.tar.zst, .tar.gz or .tar)\n", 0},                              \
    {"import", cmd_import, "add a run exported from another store",                                                   \
     "usage: smelt import FILE [--store DIR]\n\n"                                                                     \
     "Verifies every object's digest before registering anything; a damaged archive registers nothing.\n\n"          \
     STORE_HELP, 0},                                                                                                   \
    {"gc", cmd_gc, "delete objects that no run references",                                                           \
     "usage: smelt gc [--dry-run] [--store DIR]\n\n"                                                                  \
     "Deletes unreferenced objects and leftover scratch; prints the bytes freed. Objects of failed or\n"            \
     "incomplete runs are referenced and kept.\n\n" STORE_HELP "  --dry-run     only print what would be freed\n", 0},   \
    {"checkout", cmd_checkout, "write the files of a stage's output to a directory",                                 \
     "usage: smelt checkout RUN STAGE[.OUTPUT] -o DIR [--store DIR]\n\n"                                            \
     "Writes the files of the stage's output artifact (its main output unless .OUTPUT names another)\n"             \
     "into DIR, verifying every digest.\n\n" STORE_HELP "  -o DIR        the directory to write\n", 0},                \
    {"export-calibration", cmd_export_calibration, "print the token ids of a data set's calibration sequences",      \
     "usage: smelt export-calibration DIR [--split NAME] [-o FILE]\n\n"                                              \
     "DIR is a data set (smelt checkout RUN data.calibration -o DIR). Writes one JSON array of token\n"             \
     "ids per sequence and line (default split: calibration, else train), for calibrating another tool\n"         \
     "(tools/llmcompressor_compare.py) on exactly the sequences smelt's quantize stage used.\n\n"                  \
     "  --split NAME  the split to export\n  -o FILE       write to FILE instead of standard output\n", 0},        \
    {"convert", cmd_convert, "convert a checkpoint (llama2.c, HF safetensors, GGUF) to a Hugging Face folder or GGUF", \
     "usage: smelt convert IN OUT [--dtype D] [--tokenizer SPEC]\n\n" \
     "Loads IN (a Hugging Face folder, a .safetensors file or model.safetensors.index.json with\n" \
     "config.json beside it, a GGUF file, or a llama2.c .bin). When OUT ends in .gguf, writes a\n" \
     "GGUF file llama.cpp loads (metadata, tokenizer, llama.cpp's tensor names and q/k layout);\n" \
     "otherwise OUT/config.json, OUT/generation_config.json and OUT/model.safetensors, which\n" \
     "transformers, vLLM and SGLang load. llama2.c and GGUF q/k weights are permuted to Hugging\n" \
     "Face's RoPE layout. Tokenizer files of an HF folder are copied as they are; a GGUF's\n" \
     "tokenizer is written as tokenizer.json + tokenizer_config.json (with its chat template).\n\n" \
     "  --dtype D        folder: bf16 (round to nearest even), fp32 or fp16; GGUF: f32, f16, bf16,\n" \
     "                   q8_0, q4_0 or q4_1 (norms stay f32). Default: the source's float dtype (fp32\n" \
     "                   for llama2.c, GGUF and mixed sources)\n" \
     "  --tokenizer SPEC the tokenizer to write with the model (default: IN's own, if any)\n\n" \
     "Exit status: 0 ok, 1 I/O failure, 2 bad usage or a bad/damaged checkpoint.\n", 0}, \
    {"generate", cmd_generate, "generate text with a model (CPU engine, KV cache)", \
     "usage: smelt generate MODEL [--tokenizer FILE] [--prompt TEXT | --chat MESSAGE [--system TEXT]]\n" \
     "                      [--max-tokens N] [--temperature T] [--top-p P] [--seed S] [--threads N]\n\n" \
     "Loads MODEL (a Hugging Face folder, a .safetensors file with config.json beside it, a .gguf\n" \
     "file or a llama2.c .bin), encodes the prompt after BOS when the tokenizer adds one (without\n" \
     "--prompt it starts from BOS alone) and prints the prompt and the generated text on stdout as\n" \
     "it is produced; it stops at EOS (for llama2.c models also at BOS, which starts the next\n" \
     "document) or after N new tokens. Statistics (prompt time, tokens/s) go to stderr.\n\n" \
     "  --tokenizer FILE  tokenizer.json, vocab.json, tiktoken .model, llama2.c tokenizer.bin, a GGUF\n" \
     "                    file, or a folder holding one; default: MODEL when it is a folder or a GGUF\n" \
     "  --prompt TEXT     text to continue\n" \
     "  --chat MESSAGE    a user message rendered with the model's chat template (ChatML or Llama 3)\n" \
     "                    and the assistant's turn; generation stops at the end of the turn\n" \
     "  --system TEXT     the system message of --chat (default: the template's own, if any)\n" \
     "  --max-tokens N    new tokens at most (default 256; capped by max_position_embeddings)\n" \
     "  --temperature T   0 is greedy (argmax); default 1.0\n" \
     "  --top-p P         nucleus sampling in (0, 1]; default 1.0 (the whole distribution)\n" \
     "  --seed S          RNG seed of the sampler (default 1234: runs are reproducible)\n" \
     "  --threads N       CPU threads (default: the cores this process may use)\n\n" \
     "Examples:\n" \
     "  smelt generate ../shared/models/stories260K/stories260K.bin \\\n" \
     "      --tokenizer ../shared/models/stories260K/tok512.bin --temperature 0\n" \
     "  smelt generate SmolLM2-135M-Instruct.Q4_1.gguf --chat 'What is the capital of France?' --temperature 0\n\n" \
     "Exit status: 0 ok, 1 failure, 2 bad usage, a bad model or tokenizer.\n", 0}, \
    {"serve", cmd_serve, "serve a model over an OpenAI-compatible HTTP API", \
     "usage: smelt serve MODEL [--port P] [--host H] [--tokenizer SPEC] [--served-model-name NAME]\n" \
     "                   [--chat-template chatml|llama3] [--max-tokens N] [--kv-budget-mb MB] [--kv-dtype f32|f16]\n" \
     "                   [--max-batch-tokens N] [--max-seqs N] [--block-size N] [--prefix-cache on|off]\n" \
     "                   [--max-connections N] [--max-body-kb KB] [--threads N] [--port-file FILE]\n\n" \
     "Loads MODEL (a Hugging Face folder, dense or a quantized checkpoint, a .safetensors file with\n" \
     "config.json beside it, a .gguf file or a llama2.c .bin) and serves it until SIGINT or SIGTERM:\n" \
     "POST /v1/completions (text or token-id prompts, stream,\n" \
     "logprobs, echo), POST /v1/chat/completions (the chat template), GET /v1/models, /health, /metrics\n" \
     "(Prometheus). Requests run through the serving engine: continuous batching, paged KV cache, radix\n" \
     "prefix cache. Malformed JSON, unknown fields and too-long prompts get 4xx with an OpenAI error body.\n\n" \
     "  --port P              TCP port (default 8000; 0: any free port, see --port-file)\n" \
     "  --host H              address to bind (default 127.0.0.1: this machine only)\n" \
     "  --tokenizer SPEC      tokenizer (default: MODEL when it is a folder or a GGUF file; without one,\n" \
     "                        token-id prompts only)\n" \
     "  --served-model-name NAME  the model id of /v1/models (default: MODEL's file or folder name)\n" \
     "  --chat-template T     chatml or llama3 (default: the model's own template, from tokenizer_config.json\n" \
     "                        or GGUF metadata; without one, chat requests are refused)\n" \
     "  --max-tokens N        new tokens per request at most, and the default (256)\n" \
     "  --kv-budget-mb MB     KV cache memory (256)\n" \
     "  --kv-dtype f32|f16    KV cache numbers (f32: the plain forward's values; f16: half the bytes)\n" \
     "  --max-batch-tokens N  tokens per engine step (1024)\n" \
     "  --max-seqs N          requests running at once (64); more wait in a queue\n" \
     "  --block-size N        positions per KV block (16)\n" \
     "  --prefix-cache on|off reuse cached prompt prefixes (on)\n" \
     "  --max-connections N   connections at once (1024)\n" \
     "  --max-body-kb KB      request body limit (1024)\n" \
     "  --threads N           CPU threads (default: the cores this process may use)\n" \
     "  --port-file FILE      write the port listened on to FILE once ready\n\n" \
     "Exit status: 0 after a signal, 1 failure (the port is taken), 2 bad usage or a bad model.\n", 0}, \
    {"inspect", cmd_inspect, "show a checkpoint's architecture, sizes, dtypes and files", \
     "usage: smelt inspect MODEL [--json]\n\n" \
     "MODEL: a Hugging Face folder, a .safetensors file or model.safetensors.index.json (with\n" \
     "config.json beside it), a GGUF file or a llama2.c .bin. Prints the architecture, per-layer sizes, the\n" \
     "parameter count, the dtypes and files on disk, and whether every tensor has the shape the\n" \
     "config implies (\"check\"; nothing is loaded into memory).\n\n" \
     "  --json      one JSON object on stdout\n\n" \
     "Exit status: 0 ok (even when check reports a mismatch), 2 bad usage or an unreadable or\n" \
     "damaged checkpoint.\n", 0}, \
    {"tokenize", cmd_tokenize, "encode text to token ids or decode ids to text", \
     "usage: smelt tokenize --tokenizer SPEC [--json] [TEXT... | -]\n" \
     "       smelt tokenize --tokenizer SPEC --decode [ID...]\n" \
     "       smelt tokenize --tokenizer SPEC [--info] [--save-hf DIR]\n\n" \
     "Encodes TEXT (the arguments joined by one space; standard input when none or '-') and prints\n" \
     "the ids separated by spaces. No BOS is added; special tokens written in the text are kept whole.\n\n" \
     "  -t, --tokenizer SPEC  a tokenizer.json, vocab.json (merges.txt beside it), tiktoken .model,\n" \
     "                        llama2.c tokenizer.bin, a directory holding one, or builtin:bytes\n" \
     "  -d, --decode          decode the ids given as arguments (or on standard input) and print the text\n" \
     "  --json                print {\"ids\": [...]} instead of plain ids\n" \
     "  --info                print the format, vocabulary size and BOS/EOS ids\n" \
     "  --save-hf DIR         write DIR/tokenizer.json and DIR/tokenizer_config.json for Hugging Face\n\n" \
     "Examples:\n" \
     "  smelt tokenize --tokenizer ../shared/tokenizers/llama3/tokenizer.model 'This is a test sentence.'\n" \
     "  smelt tokenize --tokenizer builtin:bytes --decode 72 105 259\n\n" \
     "Exit status: 0 ok, 1 failure, 2 bad usage, bad input or a damaged tokenizer file.\n", 0}, \
    {"submit", cmd_submit, "submit a recipe to a Slurm cluster, one job per stage",                                   \
     "usage: smelt submit RECIPE --slurm [SLURM OPTIONS] [--set KEY.PATH=VALUE]... [--name NAME] [--store DIR]\n"     \
     "                    [--dry-run]\n\n"                                                                          \
     "Creates a run and submits every stage that is not already computed as a Slurm job (sbatch), with\n"           \
     "afterok dependencies mirroring the DAG; stages with ranks: N get N tasks and start their MPI ranks\n"          \
     "inside the allocation. Job ids are in the store when it returns; no smelt process needs to stay.\n"          \
     "Follow with 'smelt status RUN', continue with 'smelt resume RUN', stop with 'smelt cancel RUN'.\n"            \
     "The store must be on a file system every node sees (see the README's Slurm section).\n\n" STORE_HELP          \
     "  --slurm              submit to Slurm (required)\n" SLURM_OPTIONS_HELP                                          \
     "  --set K=V            override a recipe value (repeatable)\n"                                                  \
     "  --name NAME          a name for the run (default: the recipe's name)\n"                                       \
     "  --dry-run            print the stages, every sbatch script and the dependency chain ('smelt plan\n"          \
     "                       --slurm'); create and submit nothing. Accepts stages with device: cuda, which\n"       \
     "                       a real submission refuses while the stages run on the CPU only\n\n"                     \
     "Exit status: 0 submitted, 1 sbatch or the store failed, 2 bad usage or an invalid recipe.\n", 0},               \
    {"cancel", cmd_cancel, "cancel the Slurm jobs of a run",                                                          \
     "usage: smelt cancel RUN [--store DIR]\n\n"                                                                     \
     "Cancels every job of a run submitted to Slurm with one scancel (by the run's job name) and marks\n"           \
     "the run interrupted; 'smelt resume RUN' continues it later.\n\n" STORE_HELP, 0},                                \
    {"slurm-stage", cmd_slurm_stage, "(internal) the body of a Slurm job",                                            \
     "usage: smelt slurm-stage --store DIR --run RUN --stage NAME\n\n"                                               \
     "Run by the batch scripts of 'smelt submit --slurm'; not meant to be typed.\n", 1},                              \
    {"exec", cmd_exec, "(internal) run one attempt of one stage",                                                     \
     "usage: smelt exec --store DIR --run RUN --stage NAME [--attempt N]\n\n"                                         \
     "Launched by the runner (directly or under mpirun); not meant to be typed.\n", 1},

#endif
