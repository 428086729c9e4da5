// ONNX Runtime (CPU, onnxruntime-node) benchmark used beside derecho-infer bench.
// Usage: node ort_bench.js MODEL.onnx THREADS BATCH RUNS [nospin]
// nospin: session.intra_op.allow_spinning = 0 (ORT's equivalent of OMP_WAIT_POLICY=PASSIVE).
// Prints one line: "ort threads T batch B: MED ms/image (min MIN max MAX)". A model with a
// fixed batch of 1 is run BATCH times per timed run (noted as "sequential").
// onnxruntime-node is installed (not part of the product) with:
//   cd bench/infer/ortnode && npm install onnxruntime-node --ignore-scripts
const path = require('path');
const ort = require(path.join(__dirname, 'ortnode', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [model, threads, batch, runs] = [process.argv[2], +process.argv[3], +process.argv[4],
                                         +process.argv[5] || 10];
  const nospin = process.argv[6] === 'nospin';
  const opts = {intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
                graphOptimizationLevel: 'all'};
  if (nospin) opts.extra = {session: {intra_op: {allow_spinning: '0'}}};
  const sess = await ort.InferenceSession.create(model, opts);
  const name = sess.inputNames[0];
  const meta = sess.inputMetadata ? sess.inputMetadata[0] : null;
  let fixed = false;
  if (meta && meta.shape && typeof meta.shape[0] === 'number' && meta.shape[0] === 1) fixed = true;
  if (/squeezenet|mnist/.test(model)) fixed = fixed || true;
  const per = 3 * 224 * 224, b = fixed ? 1 : batch, reps = fixed ? batch : 1;
  const data = new Float32Array(per * b);
  for (let i = 0; i < data.length; i++) data[i] = Math.random() - 0.5;
  const feeds = {[name]: new ort.Tensor('float32', data, [b, 3, 224, 224])};
  for (let r = 0; r < reps; r++) await sess.run(feeds); // warm-up
  const t = [];
  for (let k = 0; k < runs; k++) {
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < reps; r++) await sess.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6 / batch);
  }
  t.sort((x, y) => x - y);
  console.log(`ort${nospin ? ' nospin' : ''} threads ${threads} batch ${batch}` +
              `${fixed && batch > 1 ? ' (sequential)' : ''}: ` +
              `${t[t.length >> 1].toFixed(2)} ms/image (min ${t[0].toFixed(2)} max ` +
              `${t[t.length - 1].toFixed(2)})`);
}
main().catch((e) => { console.error(e); process.exit(1); });
