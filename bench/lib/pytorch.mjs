// PyTorch as a reference for the training benchmark: whether python3 can import torch, and one training job run
// through bench/lib/pytorch_train.py (one JSON job on stdin, one JSON result line on stdout). PyTorch is never a
// dependency of Federa; without it the benchmark skips the comparison.
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), 'pytorch_train.py');
/**
 * Interpreters tried in order: $FEDERA_BENCH_PYTHON when set, else `python3` from PATH and then the system's
 * /usr/bin/python3 (a PATH python3 such as a pyenv shim often lacks the distribution's python3-torch).
 */
const CANDIDATES = process.env.FEDERA_BENCH_PYTHON ? [process.env.FEDERA_BENCH_PYTHON] : ['python3', '/usr/bin/python3'];
let python = CANDIDATES[0];

/**
 * `{ available: true, version, python }` for the first interpreter where `import torch` works (later jobs run on
 * it), else `{ available: false, reason }` with each interpreter's failure.
 */
export function torchAvailable() {
  const failures = [];
  for (const candidate of [...new Set(CANDIDATES)]) {
    const probe = spawnSync(candidate, ['-c', 'import torch, sys; sys.stdout.write(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
    if (!probe.error && probe.status === 0) {
      python = candidate;
      return { available: true, version: probe.stdout.trim(), python: candidate };
    }
    const lines = (probe.stderr ?? '').trim().split('\n');
    failures.push(`${candidate}: ${probe.error?.message ?? (lines[lines.length - 1] || `exit status ${probe.status}`)}`);
  }
  return { available: false, reason: failures.join('; ') };
}

/**
 * Trains one job in PyTorch and returns the script's result ({ torch, parameters, threads, images, seconds,
 * imagesPerSec, loss, padding, verifiedMaxAbsDiff }). The job: { architecture, layers, inputSize, channels, classes,
 * parameters, threads, images, batchSize, learningRate, seed } and optionally verify: { weights, images, count,
 * expected } (Federa's flat weights, NHWC images and softmax outputs, which the PyTorch network must reproduce).
 * Throws with the script's stderr when it fails, among other reasons when the PyTorch network's parameter count is
 * not `job.parameters` or its outputs are not Federa's.
 */
export function runPytorchJob(job, { timeoutMs = 300_000 } = {}) {
  const env = { ...process.env };
  // torch.set_num_threads decides the intra-op threads; these keep OpenMP and MKL from starting more besides.
  for (const name of ['OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS']) env[name] = String(job.threads ?? 1);
  const result = spawnSync(python, [SCRIPT], { input: JSON.stringify(job), encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  const what = `${job.mode ?? `${job.architecture ?? 'model'} ${job.inputSize}x${job.inputSize}`}, ${job.threads} thread(s)`;
  if (result.error) throw new Error(`PyTorch job (${what}) could not run: ${result.error.message}`);
  if (result.status !== 0) {
    const detail = result.stderr.trim() || result.stdout.trim() || '(no output)';
    throw new Error(`PyTorch job (${what}) failed with ${result.signal ? `signal ${result.signal}` : `exit status ${result.status}`}:\n${detail}`);
  }
  const line = result.stdout.trim().split('\n').pop();
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`PyTorch job (${what}) printed no JSON result: ${result.stdout.trim().slice(0, 500)}`);
  }
}
