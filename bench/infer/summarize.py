#!/usr/bin/python3
"""Summarises run_bench.sh output into the markdown tables of docs/perf/inference.md.
Usage: bench/infer/summarize.py RESULTS.txt
For each model / threads / batch: the median over repeats of each repeat's median ms/image,
with the range of those medians, for derecho-infer and ONNX Runtime (default and nospin)."""
import re, statistics, sys

rows = {}   # (model, who, threads, batch) -> [median ms]
sgemm = {1: [], 2: []}
model = None
for line in open(sys.argv[1]):
    m = re.match(r'sgemm threads (\d) \S+: mean ([\d.]+) GFLOP/s, best ([\d.]+)', line)
    if m:
        sgemm[int(m.group(1))].append(float(m.group(3)))
        continue
    m = re.match(r'### (\S+)', line)
    if m:
        model = m.group(1) + (' (MXNet)' if 'MXNet' in line else '') + \
            (' bf16' if 'bf16' in line else '')
        continue
    m = re.match(r'(ort(?: nospin)?|threads) ?(?:threads )?(\d) batch (\d)[^:]*: ([\d.]+) ms/image', line)
    if m and model:
        who = m.group(1) if m.group(1) != 'threads' else 'ours'
        rows.setdefault((model, who, int(m.group(2)), int(m.group(3))), []).append(float(m.group(4)))

def fmt(v):
    return '%.1f (%.1f–%.1f)' % (statistics.median(v), min(v), max(v)) if v else 'n/a'

gflop = {'squeezenet1.1.onnx': 0.698, 'resnet50_v2.onnx': 8.178, 'resnet50_v2 (MXNet)': 8.178}
for k in list(gflop):
    gflop[k + ' bf16'] = gflop[k]
print('SGEMM 1024³ best GFLOP/s per repeat: 1 thread %s, 2 threads %s' %
      (sgemm[1], sgemm[2]))
print()
print('| model | threads | batch | ours ms/image | ORT ms/image | ORT nospin ms/image | ours / ORT | ours / ORT nospin | ours GFLOP/s | % of SGEMM |')
print('|---|---|---|---|---|---|---|---|---|---|')
for mdl in ['squeezenet1.1.onnx', 'resnet50_v2.onnx', 'resnet50_v2 (MXNet)',
            'squeezenet1.1.onnx bf16', 'resnet50_v2.onnx bf16', 'resnet50_v2 (MXNet) bf16']:
    base = mdl.replace(' bf16', '').replace(' (MXNet)', '.onnx').replace('.onnx.onnx', '.onnx')
    for th in (1, 2):
        for b in (1, 8):
            o = rows.get((mdl, 'ours', th, b), [])
            r = rows.get((base, 'ort', th, b), [])  # ORT fp32 is the reference for bf16 rows
            n = rows.get((base, 'ort nospin', th, b), [])
            if not o:
                continue
            om = statistics.median(o)
            ratio = '%.2f' % (om / statistics.median(r)) if r else 'n/a'
            ration = '%.2f' % (om / statistics.median(n)) if n else 'n/a'
            gf = gflop[mdl] * th / th / (om / 1e3)
            sg = statistics.median(sgemm[th]) if sgemm[th] else 0
            pct = '%.0f%%' % (100 * gf / sg) if sg else 'n/a'
            print('| %s | %d | %d | %s | %s | %s | %s | %s | %.0f | %s |' %
                  (mdl, th, b, fmt(o), fmt(r), fmt(n), ratio, ration, gf, pct))
